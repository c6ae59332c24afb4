// Hierarchical all-reduce across processes: a local ring reduce-scatter, one phase where each tower sums the chunk
// it owns over every process (a remote step on its slot's Gloo context), then the local ring all-gather.
import { chunkBounds, REMOTE, segments, type CollStep, type Schedule, type ScheduleRequest } from './schedule.js';
import { ringAllGather, ringReduceScatter } from './ring.js';

/**
 * For `ranks` local towers: after the reduce-scatter tower r owns chunk (r+1) mod n summed over this process's
 * towers; its remote step [REMOTE, r, offset, length] makes that chunk the sum over every process (Gloo's ring
 * returns the same bytes everywhere: Note [Gloo ring all-reduce is bit-identical]); the all-gather copies it
 * verbatim to the other local towers. Every process must run this same schedule (same towers, same length), so
 * every tower of the job ends with the same bytes. One tower: a single remote step over the whole buffer.
 * `chunkElems` bounds the per-tower chunk as in ringSchedule (each segment then crosses processes on its own).
 */
export function hierarchicalSchedule(req: ScheduleRequest, chunkElems?: number): Schedule {
  const { ranks: n, length } = req;
  const phases: CollStep[][][] = [];
  for (const [segOff, segLen] of segments(length, chunkElems ? chunkElems * n : undefined)) {
    const chunks = chunkBounds(segLen, n, segOff);
    const remote = Array.from({ length: n }, (_, r) => {
      const [off, len] = chunks[(r + 1) % n]!;
      return len > 0 ? [[REMOTE, r, off, len] as CollStep] : [];
    });
    phases.push(...ringReduceScatter(chunks), remote, ...ringAllGather(chunks));
  }
  return { name: 'hierarchical', phases };
}
