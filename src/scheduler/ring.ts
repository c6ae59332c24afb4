// Ring all-reduce: n-1 reduce-scatter phases, then n-1 all-gather phases that copy each reduced chunk verbatim.
import { COPY, REDUCE, chunkBounds, segments, type CollStep, type ReductionStrategy, type Schedule, type ScheduleRequest } from './schedule.js';

/**
 * Reduce-scatter step k: tower r adds chunk (r-1-k) mod n from tower r-1, so after n-1 steps tower r holds the
 * full sum of chunk (r+1) mod n. All-gather step k: tower r copies chunk (r-k) mod n from tower r-1.
 * `chunkElems` bounds the per-tower chunk: larger messages are split into segments, each a full ring.
 */
export function ringSchedule(req: ScheduleRequest, chunkElems?: number): Schedule {
  const { ranks: n, length } = req;
  const phases: CollStep[][][] = [];
  if (n < 2) return { name: 'ring', phases };
  for (const [segOff, segLen] of segments(length, chunkElems ? chunkElems * n : undefined)) {
    const chunks = chunkBounds(segLen, n, segOff);
    const mod = (x: number) => ((x % n) + n) % n;
    for (let k = 0; k < n - 1; k++)
      phases.push(Array.from({ length: n }, (_, r) => {
        const [off, len] = chunks[mod(r - 1 - k)]!;
        return len > 0 ? [[REDUCE, mod(r - 1), off, len] as CollStep] : [];
      }));
    for (let k = 0; k < n - 1; k++)
      phases.push(Array.from({ length: n }, (_, r) => {
        const [off, len] = chunks[mod(r - k)]!;
        return len > 0 ? [[COPY, mod(r - 1), off, len] as CollStep] : [];
      }));
  }
  return { name: 'ring', phases };
}

export const ring = (chunkElems?: number): ReductionStrategy => ({ name: 'ring', plan: (req) => ringSchedule(req, chunkElems) });
