// Learning-rate schedules: constant, exponential decay (optionally staircase), piecewise constant, cosine.
import { z } from 'zod';
import { validate } from '../util/validate.js';

export const scheduleSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('constant'), lr: z.number().positive() }).strict(),
  z
    .object({
      type: z.literal('exponential'),
      lr: z.number().positive(),
      decayRate: z.number().positive().max(1),
      decaySteps: z.number().int().positive(),
      staircase: z.boolean().default(false),
    })
    .strict(),
  z
    .object({
      type: z.literal('piecewise'),
      boundaries: z.array(z.number().int().nonnegative()),
      values: z.array(z.number().positive()).min(1),
    })
    .strict()
    .refine((s) => s.values.length === s.boundaries.length + 1, { message: 'expected values.length = boundaries.length + 1' }),
  z
    .object({ type: z.literal('cosine'), lr: z.number().positive(), decaySteps: z.number().int().positive(), minLr: z.number().min(0).default(0) })
    .strict(),
]);
export type ScheduleSpec = z.input<typeof scheduleSchema>;
export type ResolvedSchedule = z.infer<typeof scheduleSchema>;

export function parseSchedule(input: unknown): ResolvedSchedule {
  if (typeof input === 'number') return { type: 'constant', lr: input };
  return validate(scheduleSchema, input, 'schedule');
}

/** The learning rate for global step `step` (0 for the first update), as TF 1's schedules define it. */
export function learningRate(s: ResolvedSchedule, step: number): number {
  switch (s.type) {
    case 'constant':
      return s.lr;
    case 'exponential': {
      const p = step / s.decaySteps;
      return s.lr * Math.pow(s.decayRate, s.staircase ? Math.floor(p) : p);
    }
    case 'piecewise': {
      let i = 0;
      while (i < s.boundaries.length && step > s.boundaries[i]!) i++;
      return s.values[i]!;
    }
    case 'cosine': {
      const p = Math.min(step, s.decaySteps) / s.decaySteps;
      return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * p));
    }
  }
}
