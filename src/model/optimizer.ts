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

/**
 * The fused update of one parameter after the guard (Note [Fused parameter tail] in passes.ts): clipping by the
 * global norm in `normSq` (clipNorm 0: none), the optimizer, and the EMA into `p.ema` when the run keeps one.
 */
export function fusedUpdateOp(t: ResolvedTrainingOptions, p: { numel: number; w: number; g: number; slots: number[]; ema?: number }, normSq: number, hyper: number): Op {
  const N = p.numel, o = t.optimizer;
  const ema = t.emaDecay !== undefined ? [p.ema!] : [];
  const tail = { clipNorm: t.clipNorm ?? 0, decay: t.emaDecay ?? 0 };
  const inputs = [normSq, hyper];
  switch (o.type) {
    case 'sgd':
      return { kernel: 'fused_sgd_update', inputs, outputs: [p.g, p.w, ...ema], attrs: { N, ...tail } };
    case 'momentum':
      return { kernel: 'fused_momentum_update', inputs, outputs: [p.g, p.w, p.slots[0]!, ...ema], attrs: { N, momentum: o.momentum, nesterov: o.nesterov ? 1 : 0, ...tail } };
    case 'adam':
      return {
        kernel: 'fused_adam_update',
        inputs,
        outputs: [p.g, p.w, p.slots[0]!, p.slots[1]!, ...ema],
        attrs: { N, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon, ...tail },
      };
  }
}
