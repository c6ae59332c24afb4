// Which CPU each compute thread of this process runs on (Note [Thread placement]).
//
// Note [Thread placement]: a CPU tower computes on its device thread and, with more than one GEMM thread, on its GEMM
// workers (Note [CPU layout] sizes them so the busy threads never outnumber the cores). The coordinator (the JS thread
// that launches steps, lands replies and emits the step events) needs CPU too, about 0.15 ms per MNIST step on the
// 2-core bench machine, and left to the OS it runs where the thread that woke it runs: the device thread, whose reply
// woke it. Every core is busy (the device thread computes, its GEMM worker computes or spins between kernels: Note
// [Pool spin]), so the coordinator preempts the device thread, and the whole step waits for it: the device thread
// sat 0.12 ms between two step programs although the next step was already queued (Note [Pipelined steps]), the
// runtime's overhead per step (bench/towers-step.ts). A GEMM worker is the cheap thread to preempt instead: products
// are handed out slab by slab (cpp/cpu/gemm_threads.cc), so while the worker is away the device thread takes its
// slabs, and in the serial stretches of a step (gather, activations, loss, update) the worker only spins.
// So by default a run in one process places its threads:
//   - each CPU tower's device thread and GEMM workers on CPUs of their own, in slot order (tower 0: the first
//     CPUs this process may use, its device thread first), one thread per CPU;
//   - the coordinator, for the length of a run (train() until `done` settles; its mask before is restored), on the
//     CPUs no compute thread has, else on the GEMM workers' CPUs.
// When every CPU would run a device thread (as many 1-thread towers as cores) nothing is pinned by default: the
// coordinator has no cheap thread to preempt, and a pinned device thread could not move away from it (2 towers on
// the 2-core bench machine ran slower pinned: 0.73 of 1 tower's examples/s against 0.96 unpinned, one bench run
// each); `layout.pin: true` pins them all the same, the coordinator left to the OS.
// What is not pinned: towers on other devices (a CUDA tower's thread waits on its stream), the float64 reference
// (it computes on the calling thread), more compute threads than CPUs (the OS time-shares them; 'threads' layouts),
// and a process group unless asked (`layout.pin: true`: each process then takes its local rank's share of the CPUs,
// localWorldSize equal shares; by default several processes on one host would not know each other's CPUs). Where the
// platform has no thread affinity (not Linux) nothing is pinned. Placement changes where threads run, never what
// they compute: the bits are the same pinned or not (test/thread-placement.test.ts). Threads the coordinator's thread
// creates while it is pinned (e.g. libuv's pool, started on first use) inherit its mask; the `started` event and
// `towerline topo` say where everything runs.

/** A tower slot as placement sees it: its label, and its compute threads (0 for towers not on host threads). */
export interface PlacedSlot {
  label: string;
  /** The device thread plus its GEMM workers for a CPU tower; 0 for towers whose threads are not placed. */
  threads: number;
}

export interface PlacementOptions {
  /** layout.pin: undefined = the default above. */
  pin?: boolean | undefined;
  /** The CPUs this process may use (the coordinator thread's mask when the runtime opens). */
  allowed: number[];
  /** layout.cores: use only the first `cores` of this process's share. */
  cores?: number | undefined;
  /** Whether this platform pins threads (the addon's affinitySupported). */
  supported: boolean;
  /** A process group's local rank and its processes on this host; undefined in one process. */
  group?: { localRank: number; localWorldSize: number } | undefined;
}

export interface Placement {
  /** Per slot: its threads' CPUs (device thread first), or undefined (not placed). */
  towers: Array<number[] | undefined>;
  /** The coordinator's CPUs during a run, or undefined (left where it is). */
  coordinator: number[] | undefined;
  /** In words, for `started` and `towerline topo`. */
  text: string;
}

const none = (slots: PlacedSlot[], why: string): Placement => ({ towers: slots.map(() => undefined), coordinator: undefined, text: `threads not pinned (${why})` });

/** An error naming layout.pin when `pin: true` cannot be honoured (the caller turns it into a ConfigError). */
export class PlacementError extends Error {}

/** Where each compute thread and the coordinator run (Note [Thread placement]); a pure function of its inputs. */
export function placeThreads(slots: PlacedSlot[], o: PlacementOptions): Placement {
  const need = slots.reduce((s, t) => s + t.threads, 0);
  const refuse = (why: string): Placement => {
    if (o.pin === true) throw new PlacementError(`layout.pin is true, but ${why}; drop layout.pin or set it false`);
    return none(slots, why);
  };
  if (o.pin === false) return none(slots, 'layout.pin false');
  if (need === 0) return none(slots, 'no CPU tower computes on host threads');
  if (!o.supported || o.allowed.length === 0) return refuse('this platform has no thread affinity');
  let share = [...o.allowed].sort((a, b) => a - b);
  if (o.group) {
    if (o.pin !== true) return none(slots, 'a process group; layout.pin true gives each process its local rank\'s share of the CPUs');
    const { localRank, localWorldSize } = o.group;
    const per = Math.floor(share.length / localWorldSize);
    if (per === 0) return refuse(`${localWorldSize} processes on this host share ${share.length} CPUs: less than one each`);
    share = share.slice(localRank * per, (localRank + 1) * per);
  }
  if (o.cores !== undefined) share = share.slice(0, o.cores);
  if (need > share.length) return refuse(`${need} compute threads on ${share.length} CPU${share.length === 1 ? '' : 's'}: more threads than CPUs, so the OS time-shares them`);
  let next = 0;
  const towers = slots.map((s) => (s.threads > 0 ? share.slice(next, (next += s.threads)) : undefined));
  const free = share.slice(next);
  const workers = towers.flatMap((c) => (c ? c.slice(1) : []));
  const coordinator = free.length > 0 ? free : workers.length > 0 ? workers : undefined;
  if (!coordinator && o.pin !== true) return none(slots, 'every CPU would run a device thread, so the coordinator could only preempt one; layout.pin true pins them all the same');
  const list = (c: number[]) => `${c.length === 1 ? 'CPU' : 'CPUs'} ${c.join(',')}`;
  const parts = slots.flatMap((s, i) => {
    const c = towers[i];
    if (!c) return [];
    return [`${s.label} on CPU ${c[0]}${c.length > 1 ? ` (GEMM workers on ${list(c.slice(1))})` : ''}`];
  });
  const coord = coordinator
    ? `the coordinator on ${list(coordinator)} during a run (${free.length > 0 ? 'CPUs no tower computes on' : 'it preempts GEMM workers, not device threads'})`
    : 'the coordinator left to the OS (every CPU runs a device thread)';
  return { towers, coordinator, text: `threads pinned: ${parts.join(', ')}; ${coord}` };
}
