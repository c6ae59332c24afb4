// Tree all-reduce: a binomial tree reduces up to tower 0 in log2(n) phases, then broadcasts down in log2(n).
import { COPY, REDUCE, segments, type CollStep, type ReductionStrategy, type Schedule, type ScheduleRequest } from './schedule.js';

/** Fewer phases than the ring (2·ceil(log2 n) instead of 2(n-1)): better for small messages, where latency rules. */
export function treeSchedule(req: ScheduleRequest, chunkElems?: number): Schedule {
  const { ranks: n, length } = req;
  const phases: CollStep[][][] = [];
  if (n < 2) return { name: 'tree', phases };
  const dists: number[] = [];
  for (let d = 1; d < n; d *= 2) dists.push(d);
  for (const [off, len] of segments(length, chunkElems)) {
    const empty = () => Array.from({ length: n }, () => [] as CollStep[]);
    for (const d of dists) {
      const phase = empty();
      for (let r = 0; r + d < n; r += 2 * d) phase[r]!.push([REDUCE, r + d, off, len]);
      phases.push(phase);
    }
    for (const d of [...dists].reverse()) {
      const phase = empty();
      for (let r = 0; r + d < n; r += 2 * d) phase[r + d]!.push([COPY, r, off, len]);
      phases.push(phase);
    }
  }
  return { name: 'tree', phases };
}

export const tree = (chunkElems?: number): ReductionStrategy => ({ name: 'tree', plan: (req) => treeSchedule(req, chunkElems) });
