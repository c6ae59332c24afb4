// The sharded update's collectives (src/model/sharded-update.ts): each tower owns one contiguous shard of the flat
// arenas; a reduce-scatter leaves the summed gradient of shard r at tower r, an all-gather copies each tower's
// updated shard to every tower. One phase each: towers in one process read each other's memory directly.
import { COPY, REDUCE, type CollStep, type Schedule } from './schedule.js';

/** Elements per 64-byte cache line: shard boundaries fall on lines, so no two towers write one line. */
export const SHARD_ALIGN = 16;

/**
 * [offset, length] of each tower's shard of [0, length): contiguous, in rank order, as equal as whole cache lines
 * allow (every shard but the last starts and ends on a multiple of `align`; a shard may be empty for tiny buffers).
 */
export function shardBounds(length: number, towers: number, align = SHARD_ALIGN): Array<[number, number]> {
  const lines = Math.ceil(length / align);
  const out: Array<[number, number]> = [];
  let line = 0;
  for (let r = 0; r < towers; r++) {
    const take = Math.floor(lines / towers) + (r < lines % towers ? 1 : 0);
    const start = Math.min(length, line * align);
    const end = Math.min(length, (line + take) * align);
    out.push([start, end - start]);
    line += take;
  }
  return out;
}

/** Tower r adds every other tower's shard r into its own, in rank order: one phase. */
export function reduceScatterSchedule(shards: Array<[number, number]>): Schedule {
  const n = shards.length;
  const phase = shards.map(([off, len], r): CollStep[] =>
    len > 0 ? Array.from({ length: n }, (_, q) => q).filter((q) => q !== r).map((q): CollStep => [REDUCE, q, off, len]) : [],
  );
  return { name: 'reduce-scatter', collective: 'reduce-scatter', shards, phases: n > 1 ? [phase] : [] };
}

/** No phases: the collective's entry barrier only, where towers share the memory a copy would fill (Note [Shared weights]). */
export function barrierSchedule(): Schedule {
  return { name: 'barrier', collective: 'barrier', phases: [] };
}

/** Tower r copies every other tower q's shard q verbatim: one phase. */
export function allGatherSchedule(shards: Array<[number, number]>): Schedule {
  const n = shards.length;
  const phase = shards.map((_, r): CollStep[] =>
    shards.flatMap(([off, len], q): CollStep[] => (q !== r && len > 0 ? [[COPY, q, off, len]] : [])),
  );
  return { name: 'all-gather', collective: 'all-gather', shards, phases: n > 1 ? [phase] : [] };
}
