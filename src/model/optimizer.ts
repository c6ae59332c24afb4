// Optimizer settings and the native update ops they compile to (SGD, momentum, Adam; clipping; weight EMA).
import { z } from 'zod';
import type { Op } from '../backend/backend.js';
import { scheduleSchema } from './schedule.js';
import { validate } from '../util/validate.js';

const lr = z.union([z.number().positive(), scheduleSchema]);

export const optimizerSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('sgd'), lr }).strict(),
  z.object({ type: z.literal('momentum'), lr, momentum: z.number().min(0).max(1).default(0.9), nesterov: z.boolean().default(false) }).strict(),
  z
    .object({
      type: z.literal('adam'),
      lr,
      beta1: z.number().min(0).lt(1).default(0.9),
      beta2: z.number().min(0).lt(1).default(0.999),
      epsilon: z.number().positive().default(1e-8),
    })
    .strict(),
]);

export const trainingOptionsSchema = z
  .object({
    optimizer: optimizerSchema,
    /** Clip the reduced gradient by its global norm (seed 001 uses 5.0). */
    clipNorm: z.number().positive().optional(),
    /** Keep an exponential moving average of the weights (seed 004), usable for evaluation. */
    emaDecay: z.number().gt(0).lt(1).optional(),
  })
  .strict();

export type OptimizerSpec = z.input<typeof optimizerSchema>;
export type ResolvedOptimizer = z.infer<typeof optimizerSchema>;
export type TrainingOptions = z.input<typeof trainingOptionsSchema>;
export type ResolvedTrainingOptions = z.infer<typeof trainingOptionsSchema>;

export function parseTrainingOptions(input: unknown): ResolvedTrainingOptions {
  return validate(trainingOptionsSchema, input, 'training options');
}

/** Slots (extra per-parameter buffers) each optimizer keeps. */
export function slotCount(o: ResolvedOptimizer): number {
  return o.type === 'sgd' ? 0 : o.type === 'momentum' ? 1 : 2;
}

/** The update op for one parameter. `hyper` is the step's hyper-parameter block (HyperSlot in src/native/hyper.ts). */
export function updateOp(o: ResolvedOptimizer, N: number, w: number, g: number, slots: number[], hyper: number): Op {
  switch (o.type) {
    case 'sgd':
      return { kernel: 'sgd_update', inputs: [g, hyper], outputs: [w], attrs: { N } };
    case 'momentum':
      return { kernel: 'momentum_update', inputs: [g, hyper], outputs: [w, slots[0]!], attrs: { N, momentum: o.momentum, nesterov: o.nesterov ? 1 : 0 } };
    case 'adam':
      return {
        kernel: 'adam_update',
        inputs: [g, hyper],
        outputs: [w, slots[0]!, slots[1]!],
        attrs: { N, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon },
      };
  }
}
