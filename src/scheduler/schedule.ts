// The collective schedule format, the user-strategy interface, and the validator every schedule passes.
//
// Note [Schedules]: an all-reduce is planned in JS as phases of steps per tower and run natively (cpp/collective/).
// A step is [kind, peer, offset, length]: kind 0 = "my [offset, offset+length) += peer's", kind 1 = "mine = peer's"
// (a verbatim copy), kind 2 = "my [offset, offset+length) = its sum over every process of the group", run on slot
// `peer`'s context (Note [Remote steps] in cpp/collective/remote.h; src/scheduler/hierarchical.ts plans them).
// All towers finish a phase before any starts the next. In one phase a tower must not write
// what another reads from it. At the end every tower must hold, for every element, the sum of all towers'
// values, produced by one single reduction and copied verbatim everywhere else, so replicas stay bit-identical.
import { native } from '../native/addon.js';

import { ScheduleError } from '../errors.js';

export const REDUCE = 0;
export const COPY = 1;
export const REMOTE = 2;
export type StepKind = typeof REDUCE | typeof COPY | typeof REMOTE;
/** [kind, peer, offset, length]; for REMOTE the second field is the slot whose process-group context sums the range. */
export type CollStep = [kind: StepKind, peer: number, offset: number, length: number];

export interface Schedule {
  name: string;
  /** phases[p][rank] = the steps `rank` performs in phase p. */
  phases: CollStep[][][];
  /**
   * What it computes: the sum of every tower's values everywhere (the default), or tower 0's values everywhere; a
   * reduce-scatter leaves the sum of shard r at tower r, an all-gather shard q of tower q everywhere
   * (src/scheduler/shards.ts, the sharded update).
   */
  collective?: 'all-reduce' | 'broadcast' | 'reduce-scatter' | 'all-gather' | 'barrier';
  /** Reduce-scatter and all-gather: [offset, length] that tower r owns, tiling [0, length) in rank order. */
  shards?: Array<[number, number]>;
}

/** What a strategy is asked to plan for: the number of towers and the message length in f32 elements. */
export interface ScheduleRequest {
  ranks: number;
  length: number;
}

/** A reduction strategy: built-in (ring, tree, naive) or the user's own. */
export interface ReductionStrategy {
  readonly name: string;
  plan(req: ScheduleRequest): Schedule;
}

export { ScheduleError };

/**
 * Checks an all-reduce schedule (what reduction strategies plan): shape, ranges, phase conflicts, that every tower
 * ends with every tower's contribution exactly once, and that all towers hold the same single reduction of each
 * element. The rules live in one place, the native validator that also guards every communicator (Note [One
 * schedule validator] in cpp/collective/schedule.h); this throws its reason as a ScheduleError.
 */
export function validateSchedule(s: Schedule, req: ScheduleRequest): void {
  const kind: unknown = (s as Partial<Schedule> | null)?.collective;
  if (kind !== undefined && kind !== 'all-reduce')
    throw new ScheduleError(`schedule '${s.name}': a reduction strategy must plan an all-reduce, got collective ${JSON.stringify(kind)}`);
  try {
    native().validateSchedule(s, req.ranks, req.length);
  } catch (e) {
    throw new ScheduleError((e as Error).message);
  }
}

/** Splits [0, length) into `parts` contiguous chunks whose sizes differ by at most one. */
export function chunkBounds(length: number, parts: number, start = 0): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const base = Math.floor(length / parts);
  const extra = length % parts;
  let off = start;
  for (let i = 0; i < parts; i++) {
    const len = base + (i < extra ? 1 : 0);
    out.push([off, len]);
    off += len;
  }
  return out;
}

/** Splits a message into segments of at most `segmentElems`, each scheduled in turn (bounded chunk size). */
export function segments(length: number, segmentElems: number | undefined): Array<[number, number]> {
  if (!segmentElems || segmentElems >= length) return [[0, length]];
  const n = Math.ceil(length / segmentElems);
  return chunkBounds(length, n);
}
