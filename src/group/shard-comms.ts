// The communicators of the sharded update's tail (Note [Sharded update] in src/model/sharded-update.ts): all-gathers
// of the norm partials, the weight arena and the EMA arena, made by the local group's native or reference maker; with
// shared weights (Note [Shared weights]) the weights' all-gather is a barrier and there is no EMA all-gather.
import type { ShardComms } from '../model/sharded-update.js';
import { partialShards } from '../model/sharded-update.js';
import { allGatherSchedule, barrierSchedule } from '../scheduler/shards.js';
import type { Schedule } from '../scheduler/schedule.js';
import type { GroupEndpoint } from '../tower-port/port.js';

/** `make(buffer of each endpoint, schedule)` creates one communicator over every tower's buffer; `shared`: Note [Shared weights]. */
export function shardComms(eps: GroupEndpoint[], shards: Array<[number, number]>, shared: boolean, make: (pick: (e: GroupEndpoint) => number, s: Schedule) => number): ShardComms {
  const bufs = eps.map((e, r) => {
    const b = e.arenas.shardBuffers;
    if (!b) throw new Error(`tower ${r} was not built for the sharded update (BuildRequest.shard); rebuild every tower with it`);
    return b;
  });
  const at = (e: GroupEndpoint) => bufs[eps.indexOf(e)]!;
  const partials = make((e) => at(e).partials, allGatherSchedule(partialShards(eps.length)));
  // Shared weights: nothing to copy, only the barrier (Note [Shared weights]).
  if (shared) return { partials, weights: make((e) => at(e).partials, barrierSchedule()) };
  const weights = make((e) => e.arenas.weightArena, allGatherSchedule(shards));
  const ema = bufs.every((b) => b.emaArena !== undefined) ? make((e) => at(e).emaArena!, allGatherSchedule(shards)) : undefined;
  return { partials, weights, ...(ema !== undefined ? { ema } : {}) };
}
