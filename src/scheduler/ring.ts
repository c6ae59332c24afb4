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
    phases.push(...ringReduceScatter(chunks), ...ringAllGather(chunks));
  }
  return { name: 'ring', phases };
}

/** The n-1 reduce-scatter phases over `chunks` (one per tower): tower r ends owning chunk (r+1) mod n. */
export function ringReduceScatter(chunks: Array<[number, number]>): CollStep[][][] {
  const n = chunks.length;
  const mod = (x: number) => ((x % n) + n) % n;
  return Array.from({ length: n - 1 }, (_, k) =>
    Array.from({ length: n }, (_, r) => {
      const [off, len] = chunks[mod(r - 1 - k)]!;
      return len > 0 ? [[REDUCE, mod(r - 1), off, len] as CollStep] : [];
    }),
  );
}

/** The n-1 all-gather phases that copy each owned chunk verbatim around the ring. */
export function ringAllGather(chunks: Array<[number, number]>): CollStep[][][] {
  const n = chunks.length;
  const mod = (x: number) => ((x % n) + n) % n;
  return Array.from({ length: n - 1 }, (_, k) =>
    Array.from({ length: n }, (_, r) => {
      const [off, len] = chunks[mod(r - k)]!;
      return len > 0 ? [[COPY, mod(r - 1), off, len] as CollStep] : [];
    }),
  );
}

export const ring = (chunkElems?: number): ReductionStrategy => ({ name: 'ring', plan: (req) => ringSchedule(req, chunkElems) });
