// How CPU towers share this machine's cores (Note [CPU layout]).
//
// Note [CPU layout]: every CPU tower is one device thread, and its GEMMs may use more threads. The towers of every
// process on this machine share its cores, so each tower gets floor(cores / towers) GEMM threads (at least 1): one
// tower on 2 cores runs its GEMMs on 2 threads, 2 towers on 2 cores one each, and the busy threads never outnumber
// the cores while the towers fit. When more towers than cores are asked for, the device threads time-share the
// cores (the spinning barrier then yields instead of spinning: Note [Spinning barrier]); the layout says so. The
// micro-batched alternative (extra towers run as micro-batches on the existing device threads) is not built yet.
// The decision is made once, here; src/tower-port/open.ts applies it and `towerline topo` prints it.

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
