// Which CPU each compute thread of this process runs on (Note [Thread placement]).
//
// Note [Thread placement]: a CPU tower computes on its device thread and, with more than one GEMM thread, on its GEMM
// workers (Note [CPU layout] sizes them so the busy threads never outnumber the cores). The coordinator (the JS thread
// that launches steps, lands replies and emits the step events) needs CPU too, 0.15-0.2 ms per MNIST step on the
// 2-core bench machine. With every core busy it preempts a compute thread; when the device thread's reply woke it,
// often the device thread, and the step waits: the device thread sat 0.12 ms between two step programs although the
// next step was queued (Note [Pipelined steps]). Two changes were measured against that (bench/towers-step.ts):
//   - placing the threads: the device thread and GEMM workers pinned to CPUs of their own, the coordinator pinned
//     for the length of a run to the CPUs no compute thread has, else to the GEMM workers' (a worker is the cheap
//     thread to preempt: products are handed out slab by slab, so the device thread takes a preempted worker's
//     slabs, and in a step's serial stretches the worker only spins);
//   - handing the wake-up to a spinning GEMM worker (Note [Hand-off to a spinning worker] in cpp/cpu/gemm_threads.cc),
//     so the JS thread is woken from, and by default runs on, the worker's CPU.
// The hand-off alone took the 1-tower overhead from 0.12 ms to 10 us with nothing pinned. Pinning on top of it
// changed neither that nor the examples/s beyond the machine's noise (interleaved runs: 3.15 ms against 3.22 ms a
// step, 2.42 against 3.20, 1.00 in the bench's own pinned/unpinned row), and 2 towers on 2 cores ran slower pinned
// (a pinned device thread cannot move away from the coordinator). So placement is off by default (it would also
// restrict the app's own thread during a run) and `layout.pin: true` (CLI --pin) turns it on:
//   - each CPU tower's device thread and GEMM workers on CPUs of their own, in slot order (tower 0: the first
//     CPUs this process may use, its device thread first), one thread per CPU;
//   - the coordinator, for the length of a run (train() until `done` settles; its mask before is restored), on the
//     CPUs no compute thread has, else on the GEMM workers' CPUs, else (every CPU runs a device thread) left to the OS.
// What is never pinned: towers on other devices (a CUDA tower's thread waits on its stream), the float64 reference
// (it computes on the calling thread). Refused with layout.pin true (a ConfigError naming it): more compute threads
// than CPUs, and platforms without thread affinity (not Linux). In a process group each process takes its local
// rank's share of the CPUs (localWorldSize equal shares). Placement changes where threads run, never what they
// compute: the bits are the same pinned or not (test/thread-placement.test.ts). Threads the coordinator's thread
// creates while it is pinned (e.g. libuv's pool, started on first use) inherit its mask; the `started` event and
// `towerline topo` say where everything runs.

/** A tower slot as placement sees it: its label, and its compute threads (0 for towers not on host threads). */
export interface PlacedSlot {
  label: string;
  /** The device thread plus its GEMM workers for a CPU tower; 0 for towers whose threads are not placed. */
  threads: number;
}

export interface PlacementOptions {
  /** layout.pin: undefined or false = not pinned (the default above). */
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
  const refuse = (why: string): never => {
    throw new PlacementError(`layout.pin is true, but ${why}; drop layout.pin or set it false`);
  };
  if (o.pin !== true) return none(slots, o.pin === false ? 'layout.pin false' : 'the default; layout.pin true pins them');
  if (need === 0) return none(slots, 'no CPU tower computes on host threads');
  if (!o.supported || o.allowed.length === 0) refuse('this platform has no thread affinity');
  let share = [...o.allowed].sort((a, b) => a - b);
  if (o.group) {
    const { localRank, localWorldSize } = o.group;
    const per = Math.floor(share.length / localWorldSize);
    if (per === 0) refuse(`${localWorldSize} processes on this host share ${share.length} CPUs: less than one each`);
    share = share.slice(localRank * per, (localRank + 1) * per);
  }
  if (o.cores !== undefined) share = share.slice(0, o.cores);
  if (need > share.length) refuse(`${need} compute threads on ${share.length} CPU${share.length === 1 ? '' : 's'}: more threads than CPUs, so the OS time-shares them`);
  let next = 0;
  const towers = slots.map((s) => (s.threads > 0 ? share.slice(next, (next += s.threads)) : undefined));
  const free = share.slice(next);
  const workers = towers.flatMap((c) => (c ? c.slice(1) : []));
  const coordinator = free.length > 0 ? free : workers.length > 0 ? workers : undefined;
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
