// What the processes of a run agree on before step 1 (Note [Process dimension] in src/group/world.ts): everything
// the trajectory, the step count and the collectives' lengths depend on. Per-process things (where the data files
// are, where this process writes its logs and traces) are left out.
import { createHash } from 'node:crypto';
import { runSettingsOf, type ResolvedTrainOptions } from '../options.js';
import type { Schedule } from '../scheduler/schedule.js';

export function runAgreement(o: ResolvedTrainOptions, schedule: Schedule, trainCount: number, totalSteps: number): Record<string, unknown> {
  const { data, ...settings } = runSettingsOf(o);
  const { dir: _dir, ...dataSettings } = data as typeof data & { dir?: string };
  return {
    ...settings,
    data: { ...dataSettings, trainExamples: trainCount },
    totalSteps,
    evaluate: o.evaluate,
    guard: o.guard,
    checkpoint: o.checkpoint ? { everySteps: o.checkpoint.everySteps ?? null, resume: o.checkpoint.resume } : null,
    overlap: o.overlap ? { bucketBytes: o.bucketBytes ?? null } : false, // the buckets' collectives must match across processes
    schedule: { name: schedule.name, phases: createHash('sha256').update(JSON.stringify(schedule.phases)).digest('hex').slice(0, 16) },
  };
}
