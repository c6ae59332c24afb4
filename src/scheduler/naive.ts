// Naive all-reduce, the baseline: tower 0 adds every other tower's buffer, then every tower copies tower 0's.
import { COPY, REDUCE, type CollStep, type ReductionStrategy, type Schedule, type ScheduleRequest } from './schedule.js';

export function naiveSchedule(req: ScheduleRequest): Schedule {
  const { ranks: n, length } = req;
  if (n < 2) return { name: 'naive', phases: [] };
  const reduce: CollStep[][] = Array.from({ length: n }, () => []);
  for (let r = 1; r < n; r++) reduce[0]!.push([REDUCE, r, 0, length]);
  const broadcast: CollStep[][] = Array.from({ length: n }, (_, r) => (r === 0 ? [] : [[COPY, 0, 0, length] as CollStep]));
  return { name: 'naive', phases: [reduce, broadcast] };
}

export const naive = (): ReductionStrategy => ({ name: 'naive', plan: naiveSchedule });
