// Accepting a planned schedule: a private, frozen copy taken before validation (what is validated is what runs), and
// bounds on its size before anything expensive is done with it.
import { ConfigError } from '../errors.js';
import { ScheduleError, type CollStep, type Schedule, type ScheduleRequest } from './schedule.js';

/** At most this many segments per message (each a whole ring or tree): more would only cost phases and barriers. */
export const MAX_SEGMENTS = 256;
/** At most this many steps in any schedule, custom ones included (validation and execution are linear in it). */
export const MAX_SCHEDULE_STEPS = 1 << 20;

/**
 * A built-in algorithm's chunkElems that would cut a message of `length` elements into more than MAX_SEGMENTS
 * segments is refused before any planning (a tiny chunkElems would otherwise block the event loop for seconds).
 * `perSegment` is how many elements one segment spans per chunkElems (the ring: one chunk per tower).
 */
export function checkChunkElems(chunkElems: number | undefined, req: ScheduleRequest, perSegment: number): void {
  if (chunkElems === undefined) return;
  const segments = Math.ceil(req.length / (chunkElems * perSegment));
  if (segments <= MAX_SEGMENTS) return;
  const least = Math.ceil(req.length / (MAX_SEGMENTS * perSegment));
  throw new ConfigError(
    `reduction.chunkElems: ${chunkElems} would cut the ${req.length}-element gradient of ${req.ranks} towers into ${segments} segments, ` +
      `each a whole all-reduce; at most ${MAX_SEGMENTS} are allowed: use chunkElems >= ${least}, or leave it unset`,
    'reduction.chunkElems',
  );
}

/**
 * Copies a planned schedule element by element (each field read once, so a getter or a later edit by the strategy
 * cannot make what runs differ from what was validated) and freezes the copy.
 */
export function acceptSchedule(s: unknown, strategy: string): Schedule {
  const bad = (why: string) => new ScheduleError(`reduction strategy '${strategy}' planned a malformed schedule: ${why}`);
  if (typeof s !== 'object' || s === null) throw bad(`expected { name, phases }, got ${s === null ? 'null' : typeof s}`);
  const src = s as { name?: unknown; phases?: unknown; collective?: unknown };
  const name = src.name;
  const collective = src.collective;
  const phases = src.phases;
  if (!Array.isArray(phases)) throw bad('phases must be an array of phases');
  let steps = 0;
  const copy = phases.map((phase: unknown, p) => {
    if (!Array.isArray(phase)) throw bad(`phases[${p}] must be an array (one list of steps per tower)`);
    return Object.freeze(
      phase.map((moves: unknown, r) => {
        if (!Array.isArray(moves)) throw bad(`phases[${p}][${r}] must be an array of steps`);
        steps += moves.length;
        if (steps > MAX_SCHEDULE_STEPS) throw bad(`more than ${MAX_SCHEDULE_STEPS} steps; plan fewer, larger ones`);
        return Object.freeze(
          moves.map((step: unknown, i) => {
            if (!Array.isArray(step) || step.length !== 4) throw bad(`phases[${p}][${r}][${i}] must be [kind, peer, offset, length]`);
            return Object.freeze([step[0], step[1], step[2], step[3]]) as unknown as CollStep;
          }),
        );
      }),
    );
  });
  const out: Schedule = { name: typeof name === 'string' ? name : String(name), phases: Object.freeze(copy) as unknown as CollStep[][][] };
  if (collective !== undefined) out.collective = collective as Schedule['collective'];
  return Object.freeze(out);
}
