// How CPU towers share this machine's cores (Note [CPU layout]).
//
// Note [CPU layout]: every CPU tower is one device thread, and its GEMMs may use more threads. The towers of every
// process on this machine share its cores, so each tower gets floor(cores / towers) GEMM threads (at least 1): one
// tower on 2 cores runs its GEMMs on 2 threads, 2 towers on 2 cores one each, so the busy threads never outnumber
// the cores. When more CPU towers are asked for than there are cores, a run in one process folds them by default
// (`layout.extraTowers: 'fold'`): it opens one tower (device thread) per core and the global batch is shared over
// those towers (Note [Shard weighting]), so the extra towers' examples run as part of the existing towers' shards
// (a larger micro-batch on each device thread, not a separate pass). This re-splits the batch over fewer towers;
// it is the same math because every example counts once with weight 1 / global batch whatever the split, so the
// gradient and the update are the ones the requested towers would give up to float rounding (the same sum in
// another order, < 1e-5: test/fold-towers.test.ts), not bit for bit. What the extra towers would have added is
// only more replicas of the same weights. A fold runs exactly what as many towers as cores run (the same slots,
// GEMM threads, schedule and shard sizes; no extra split or pass), so 4 towers asked for on 2 cores cost what 2
// towers cost. (In mode 'async' each worker takes whole batches of its own, so there a
// fold means fewer workers, each as before: asynchronous training promises no trajectory to keep.)
// `layout: { extraTowers: 'threads' }` opts into a device thread per tower
// (they time-share the cores; the spinning barrier then yields instead of spinning: Note [Spinning barrier]). A
// process group keeps 'threads' (every process runs the towers the group agreed on; 'fold' there is refused), and
// so do towers on the float64 reference backend (they compute on the calling thread; there is nothing to fold).
// The decision is made once, here; src/runtime.ts applies it, and the `started` event and `towerline topo` say
// what was asked for and what runs.

import { placeThreads } from './thread-placement.js';

export interface CpuLayout {
  /** Hardware threads this machine offers (os.availableParallelism()). */
  cores: number;
  /** CPU towers of every process on this machine. */
  towers: number;
  /** GEMM threads each tower's device uses. */
  gemmThreads: number;
  /** Device threads that compute at once: every tower's, or the cores when there are fewer. */
  busyThreads: number;
  /** More towers than cores: the device threads time-share the cores. */
  oversubscribed: boolean;
}

export function cpuLayout(cores: number, towers: number): CpuLayout {
  if (!Number.isInteger(cores) || cores < 1) throw new RangeError(`cpuLayout: cores must be an integer >= 1, got ${cores}`);
  if (!Number.isInteger(towers) || towers < 0) throw new RangeError(`cpuLayout: towers must be an integer >= 0, got ${towers}`);
  const gemmThreads = Math.max(1, Math.floor(cores / Math.max(1, towers)));
  return { cores, towers, gemmThreads, busyThreads: Math.min(cores, towers * gemmThreads), oversubscribed: towers > cores };
}

/** One line, e.g. "2 CPU towers on 2 cores: 1 GEMM thread each". */
export function describeLayout(l: CpuLayout): string {
  const head = `${l.towers} CPU tower${l.towers === 1 ? '' : 's'} on ${l.cores} core${l.cores === 1 ? '' : 's'}: ${l.gemmThreads} GEMM thread${l.gemmThreads === 1 ? '' : 's'} ${l.towers === 1 ? '' : 'each'}`.trimEnd();
  return l.oversubscribed ? `${head}; more towers than cores, so their device threads time-share the cores` : head;
}

/** How towers beyond the cores run (RuntimeOptions.layout). */
export interface LayoutOptions {
  /** 'fold' (default in one process): at most one CPU tower per core, the batch shared over them; 'threads' (default in a process group): a device thread per tower, time-sharing the cores. */
  extraTowers?: 'threads' | 'fold';
  /** The cores to lay the towers out on (default: os.availableParallelism()). */
  cores?: number;
  /** Pin compute threads and the coordinator to CPUs (Note [Thread placement]); default false. */
  pin?: boolean;
}

/** The device slots a run opens, and its layout in words (for `started`). */
export interface SlotLayout<S> {
  slots: S[];
  layout: CpuLayout;
  text: string;
}

/**
 * What happens to CPU towers beyond the cores: as asked, else 'fold' where it may (`foldByDefault`: one process whose
 * towers have device threads) and 'threads' elsewhere (a process group; the float64 reference, which has no threads).
 */
export function extraTowersMode(o: LayoutOptions, foldByDefault: boolean): 'threads' | 'fold' {
  return o.extraTowers ?? (foldByDefault ? 'fold' : 'threads');
}

/**
 * Applies `o` to the parsed device slots: when CPU towers beyond `cores` are folded (extraTowersMode), only the first
 * `cores` CPU slots are kept (other kinds are untouched). `processesOnHost` processes of one run share the cores.
 */
export function layoutSlots<S extends { kind: string }>(slots: S[], o: LayoutOptions, cores: number, processesOnHost = 1, foldByDefault = true): SlotLayout<S> {
  const cpu = slots.filter((s) => s.kind === 'cpu').length;
  const mode = extraTowersMode(o, foldByDefault);
  if (mode !== 'fold' || cpu <= cores) {
    const layout = cpuLayout(cores, cpu * processesOnHost);
    const optIn = o.extraTowers === 'threads' && layout.oversubscribed ? " (layout.extraTowers 'threads')" : '';
    return { slots, layout, text: describeLayout(layout) + optIn };
  }
  let kept = 0;
  const out = slots.filter((s) => s.kind !== 'cpu' || kept++ < cores);
  const layout = cpuLayout(cores, cores);
  return { slots: out, layout, text: describeFold(cpu, layout, o.extraTowers === undefined) };
}

/** The `started` / topo line of a fold: what was asked for, what runs, and how the extra towers' examples are run. */
function describeFold(asked: number, l: CpuLayout, byDefault: boolean): string {
  const c = l.cores;
  return `${asked} CPU towers asked for on ${c} core${c === 1 ? '' : 's'}: ${c} device thread${c === 1 ? '' : 's'}, the batch shared over them ` +
    `(layout.extraTowers 'fold'${byDefault ? ', the default' : ''}: the ${asked - c} extra towers' examples run as part of those threads' shards, ` +
    `the same gradient up to float rounding; 'threads' gives each tower its own thread); ${describeLayout(l).replace(/^.*?: /, '')}`;
}

/**
 * What a run in one process on `cores` cores does with `towers` CPU towers by default, in words (`towerline topo`);
 * with `cpus` (the CPUs this process may use, and whether threads can be pinned), where layout.pin true would put its threads.
 */
export function describeDefaultLayout(cores: number, towers: number, cpus?: { allowed: number[]; supported: boolean }): string {
  const l = layoutSlots(Array.from({ length: towers }, () => ({ kind: 'cpu' })), {}, cores);
  if (!cpus) return l.text;
  try {
    const placed = placeThreads(l.slots.map((_, i) => ({ label: `cpu:${i}`, threads: l.layout.gemmThreads })), { ...cpus, cores, pin: true });
    return `${l.text}; with --pin (layout.pin true): ${placed.text}`;
  } catch (e) {
    return `${l.text}; --pin (layout.pin true) refused: ${(e as Error).message}`;
  }
}
