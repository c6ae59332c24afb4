// The run's layout (layoutSchema in src/options.ts): what it is now, and what a change on resume does to the
// trajectory. Reproducibility depends on nothing outside the run's settings: whatever could change the bits is here.
import { createHash } from 'node:crypto';
import type { Layout } from '../options.js';
import type { Schedule } from '../scheduler/schedule.js';

/** A schedule's name and a digest of its steps: the same id means the same summation order for every element. */
export function scheduleId(s: Schedule): string {
  return `${s.name} ${createHash('sha256').update(JSON.stringify(s.phases)).digest('hex').slice(0, 12)}`;
}

const kinds = (towers: string[]): string => towers.map((t) => t.split(':')[0]).join(',');

type Effect = { same: boolean; why: string };

/** Per field: does a change keep the trajectory bit-identical, and why. */
const EFFECT: { [K in keyof Layout]: (saved: Layout[K], now: Layout[K]) => Effect } = {
  towers: (a, b) =>
    a.length === b.length && kinds(a) === kinds(b)
      ? { same: true, why: 'as many towers of the same kinds split and sum alike' }
      : { same: false, why: 'another number or kind of towers splits the batch and sums the gradient differently' },
  gemmThreads: () => ({ same: true, why: 'GEMM results do not depend on the thread count' }),
  gemm: () => ({ same: false, why: 'another GEMM kernel rounds differently' }),
  reduction: () => ({ same: false, why: 'another all-reduce schedule sums in another order' }),
  shares: () => ({ same: false, why: "'speed' shares split each batch by measured speed" }),
  shardUpdate: (a, b) => (!a === !b ? { same: true, why: 'the same update' } : { same: false, why: 'the sharded update sums the gradient and its norm in another order' }),
};

export interface LayoutChange {
  /** One line per differing field: saved and current values, and the effect. */
  lines: string[];
  bitIdentical: boolean;
}

/** What changed between the saved layout and the current one; undefined when nothing that matters did. */
export function layoutChange(saved: Layout | undefined, now: Layout): LayoutChange | undefined {
  if (!saved) return undefined;
  const lines: string[] = [];
  let bitIdentical = true;
  for (const key of Object.keys(EFFECT) as Array<keyof Layout>) {
    const a = saved[key];
    const b = now[key];
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    const e = (EFFECT[key] as (x: unknown, y: unknown) => Effect)(a, b);
    bitIdentical &&= e.same;
    lines.push(`${key}: saved ${JSON.stringify(a)}, now ${JSON.stringify(b)} (${e.same ? 'keeps the bits' : 'changes the bits'}: ${e.why})`);
  }
  if (now.shares === 'speed' && saved.shares === 'speed') {
    bitIdentical = false;
    lines.push("shares: 'speed' (no two runs split their batches alike, so no run is bit-reproducible)");
  }
  return lines.length === 0 ? undefined : { lines, bitIdentical };
}

/** The warning a resumed run gives when its layout changed. */
export function describeLayoutChange(path: string, c: LayoutChange): string {
  const verdict = c.bitIdentical
    ? 'The trajectory stays bit-identical to an uninterrupted run.'
    : 'The run continues from the same state, but its trajectory is no longer bit-identical to an uninterrupted run.';
  return `resuming ${path} under another layout:\n  ${c.lines.join('\n  ')}\n${verdict}`;
}
