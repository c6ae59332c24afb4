// How CPU towers share this machine's cores (Note [CPU layout]).
//
// Note [CPU layout]: every CPU tower is one device thread, and its GEMMs may use more threads. The towers of every
// process on this machine share its cores, so each tower gets floor(cores / towers) GEMM threads (at least 1): one
// tower on 2 cores runs its GEMMs on 2 threads, 2 towers on 2 cores one each, and the busy threads never outnumber
// the cores while the towers fit. When more towers than cores are asked for, the device threads time-share the
// cores (the spinning barrier then yields instead of spinning: Note [Spinning barrier]); the layout says so. With
// `layout: { extraTowers: 'fold' }` the towers beyond the cores get no device thread of their own: the run opens
// one tower per core and the batch is shared over those (Note [Shard weighting]), so every example still counts
// once with weight 1 / global batch and the gradient is the one the extra towers would have produced with their
// own threads (the same sum in another order). What the extra towers did not bring is more replicas: they would
// only have held copies of the same weights. One process only (a process group agrees on its towers per process
// before this could be applied). The decision is made once, here; src/runtime.ts applies it, the `started` event
// and `towerline topo` print it.

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
  /** 'threads' (default): a device thread per tower, time-sharing the cores; 'fold': at most one CPU tower per core. */
  extraTowers?: 'threads' | 'fold';
  /** The cores to lay the towers out on (default: os.availableParallelism()). */
  cores?: number;
}

/** The device slots a run opens, and its layout in words (for `started`). */
export interface SlotLayout<S> {
  slots: S[];
  layout: CpuLayout;
  text: string;
}

/**
 * Applies `o` to the parsed device slots: with extraTowers 'fold', only the first `cores` CPU slots are kept (other
 * kinds are untouched). `processesOnHost` processes of one run share the cores.
 */
export function layoutSlots<S extends { kind: string }>(slots: S[], o: LayoutOptions, cores: number, processesOnHost = 1): SlotLayout<S> {
  const cpu = slots.filter((s) => s.kind === 'cpu').length;
  if (o.extraTowers !== 'fold' || cpu <= cores) {
    const layout = cpuLayout(cores, cpu * processesOnHost);
    return { slots, layout, text: describeLayout(layout) };
  }
  let kept = 0;
  const out = slots.filter((s) => s.kind !== 'cpu' || kept++ < cores);
  const layout = cpuLayout(cores, cores);
  return {
    slots: out,
    layout,
    text: `${cpu} CPU towers asked for on ${cores} core${cores === 1 ? '' : 's'}: ${cores} device thread${cores === 1 ? '' : 's'}, the batch shared over them ` +
      `(layout.extraTowers 'fold': the ${cpu - cores} extra towers' examples run on those threads); ${describeLayout(layout).replace(/^.*?: /, '')}`,
  };
}
