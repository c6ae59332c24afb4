// The collective schedule format, the user-strategy interface, and the validator every schedule passes.
//
// Note [Schedules]: an all-reduce is planned in JS as phases of steps per tower and run natively (cpp/collective/).
// A step is [kind, peer, offset, length]: kind 0 = "my [offset, offset+length) += peer's", kind 1 = "mine = peer's"
// (a verbatim copy). All towers finish a phase before any starts the next. In one phase a tower must not write
// what another reads from it. At the end every tower must hold, for every element, the sum of all towers'
// values, produced by one single reduction and copied verbatim everywhere else, so replicas stay bit-identical.

import { ScheduleError } from '../errors.js';

export const REDUCE = 0;
export const COPY = 1;
export type StepKind = typeof REDUCE | typeof COPY;
export type CollStep = [kind: StepKind, peer: number, offset: number, length: number];

export interface Schedule {
  name: string;
  /** phases[p][rank] = the steps `rank` performs in phase p. */
  phases: CollStep[][][];
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
 * Checks a schedule symbolically: shape, ranges, phase conflicts, that every tower ends with every tower's
 * contribution exactly once, and that all towers hold the same single reduction of each element.
 */
export function validateSchedule(s: Schedule, req: ScheduleRequest): void {
  const { ranks, length } = req;
  const where = `schedule '${s?.name ?? '?'}' for ${ranks} towers and ${length} elements`;
  if (!s || typeof s !== 'object' || !Array.isArray(s.phases)) throw new ScheduleError(`${where}: expected { name, phases: CollStep[][][] }`);
  const cuts = new Set<number>([0, length]);
  s.phases.forEach((phase, p) => {
    if (!Array.isArray(phase) || phase.length !== ranks)
      throw new ScheduleError(`${where}: phases[${p}] must list exactly ${ranks} towers' steps, got ${Array.isArray(phase) ? phase.length : typeof phase}`);
    phase.forEach((steps, r) => {
      if (!Array.isArray(steps)) throw new ScheduleError(`${where}: phases[${p}][${r}] must be an array of steps`);
      steps.forEach((st, k) => {
        const at = `${where}: phases[${p}][${r}][${k}]`;
        if (!Array.isArray(st) || st.length !== 4 || !st.every((x) => Number.isInteger(x)))
          throw new ScheduleError(`${at} must be [kind, peer, offset, length] integers, got ${JSON.stringify(st)}`);
        const [kind, peer, off, len] = st;
        if (kind !== REDUCE && kind !== COPY) throw new ScheduleError(`${at}: kind must be 0 (reduce) or 1 (copy), got ${kind}`);
        if (peer < 0 || peer >= ranks || peer === r) throw new ScheduleError(`${at}: peer must be another tower in [0, ${ranks}), got ${peer}`);
        if (off < 0 || len < 0 || off + len > length) throw new ScheduleError(`${at}: range [${off}, ${off + len}) is outside [0, ${length})`);
        cuts.add(off);
        cuts.add(off + len);
      });
    });
    // Conflicts: what r writes must not overlap what others read from r in this phase.
    for (let r = 0; r < ranks; r++)
      for (const [, , wo, wl] of phase[r]!)
        for (let q = 0; q < ranks; q++)
          for (const [, peer, ro, rl] of phase[q]!)
            if (peer === r && wl > 0 && rl > 0 && ro < wo + wl && wo < ro + rl)
              throw new ScheduleError(`${where}: in phase ${p}, tower ${r} writes [${wo}, ${wo + wl}) while tower ${q} reads [${ro}, ${ro + rl}) of it; put them in different phases`);
  });
  if (length === 0) return;

  // Symbolic run over elementary segments: who contributed (a bitmask), and which reduction produced the value.
  const bounds = [...cuts].sort((a, b) => a - b);
  const segs = bounds.length - 1;
  const segIndex = new Map(bounds.map((b, i) => [b, i]));
  const full = (1n << BigInt(ranks)) - 1n;
  let masks: bigint[][] = Array.from({ length: ranks }, (_, r) => Array<bigint>(segs).fill(1n << BigInt(r)));
  let origin: string[][] = Array.from({ length: ranks }, (_, r) => Array<string>(segs).fill(`input${r}`));
  s.phases.forEach((phase, p) => {
    const nm = masks.map((m) => m.slice());
    const no = origin.map((o) => o.slice());
    phase.forEach((steps, r) => {
      for (const [kind, peer, off, len] of steps) {
        for (let g = segIndex.get(off)!; g < segIndex.get(off + len)!; g++) {
          if (kind === COPY) {
            nm[r]![g] = masks[peer]![g]!;
            no[r]![g] = origin[peer]![g]!;
          } else {
            const overlap = nm[r]![g]! & masks[peer]![g]!;
            if (overlap !== 0n)
              throw new ScheduleError(`${where}: phase ${p}: tower ${r} adds tower ${peer}'s [${bounds[g]}, ${bounds[g + 1]}) which already counts tower(s) ${bitsOf(overlap)}; each contribution must be summed once`);
            nm[r]![g] = nm[r]![g]! | masks[peer]![g]!;
            no[r]![g] = `reduce@${p}:${r}:${g}`;
          }
        }
      }
    });
    masks = nm;
    origin = no;
  });
  for (let r = 0; r < ranks; r++)
    for (let g = 0; g < segs; g++) {
      if (masks[r]![g] !== full)
        throw new ScheduleError(`${where}: at the end tower ${r}'s [${bounds[g]}, ${bounds[g + 1]}) sums towers ${bitsOf(masks[r]![g]!)} only; every tower needs the sum of all ${ranks}`);
      if (origin[r]![g] !== origin[0]![g])
        throw new ScheduleError(`${where}: towers 0 and ${r} hold separately computed sums of [${bounds[g]}, ${bounds[g + 1]}); copy one reduced chunk verbatim so replicas stay bit-identical`);
    }
}

function bitsOf(m: bigint): string {
  const out: number[] = [];
  for (let i = 0; m > 0n; i++, m >>= 1n) if (m & 1n) out.push(i);
  return out.join(', ');
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
