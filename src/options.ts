// Schemas for the runtime's and train()'s options, so plain-JavaScript callers get errors naming the field.
import { z } from 'zod';
import { validate } from './util/validate.js';

const positiveInt = z.number().int('expected an integer').positive('expected a positive integer');

export const runtimeOptionsSchema = z
  .object({
    devices: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { message: "expected a device list like 'cpu:2' or ['cpu:0', 'cpu:1']" }),
    reduction: z.unknown().optional(), // checked by planReduction, which knows custom strategies
    callTimeoutMs: positiveInt.optional(),
    collectiveTimeoutMs: positiveInt.optional(),
    shares: z.enum(['equal', 'speed']).optional(),
  })
  .strict();

export const trainOptionsSchema = z
  .object({
    model: z.unknown(), // checked by parseModelSpec
    optimizer: z.unknown(), // checked by parseTrainingOptions
    clipNorm: z.number().positive().optional(),
    emaDecay: z.number().gt(0).lt(1).optional(),
    data: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('mnist'), batchSize: positiveInt, dir: z.string().min(1).optional(), lastBatch: z.enum(['drop', 'keep']).optional(), shuffle: z.boolean().optional() }).strict(),
      z
        .object({
          kind: z.literal('cifar10'),
          batchSize: positiveInt,
          dir: z.string().min(1).optional(),
          generated: z.object({ count: positiveInt.optional(), testCount: positiveInt.optional(), seed: z.number().int().min(0).optional() }).strict().optional(),
          augment: z.boolean().optional(),
          lastBatch: z.enum(['drop', 'keep']).optional(),
          shuffle: z.boolean().optional(),
        })
        .strict()
        .refine((d) => d.dir === undefined || d.generated === undefined, { message: 'give dir (the CIFAR-10 binary files) or generated, not both' }),
      z
        .object({
          kind: z.literal('blocks'),
          batchSize: positiveInt,
          count: positiveInt.optional(),
          dim: positiveInt.optional(),
          seed: z.number().int().min(0).optional(),
          lastBatch: z.enum(['drop', 'keep']).optional(),
          shuffle: z.boolean().optional(),
        })
        .strict(),
    ]),
    epochs: positiveInt.optional(),
    steps: positiveInt.optional(),
    seed: z.number().int().min(0).optional(),
    evaluate: z.boolean().optional(),
    guard: z
      .object({
        nonFinite: z.enum(['halt', 'skip', 'rollback']).optional(),
        rollbackLrFactor: z.number().gt(0).lt(1).optional(),
        stepTimeoutMs: positiveInt.optional(),
        replicaCheckEvery: z.number().int().min(0).optional(),
        replicaPolicy: z.enum(['halt', 'rebroadcast']).optional(),
      })
      .strict()
      .optional(),
    checkpoint: z.object({ dir: z.string().min(1), everySteps: positiveInt.optional(), keep: positiveInt.optional(), resume: z.boolean().optional() }).strict().optional(),
    logDir: z.string().min(1).optional(),
    histogramsEvery: positiveInt.optional(),
    traceFile: z.string().min(1).optional(),
    testHooks: z.unknown().optional(),
  })
  .strict()
  .refine((o) => o.epochs !== undefined || o.steps !== undefined, { message: 'give epochs or steps', path: ['epochs'] });

export function checkRuntimeOptions(o: unknown): void {
  validate(runtimeOptionsSchema, o, 'runtime options', "Example: createRuntime({ devices: 'cpu:2', reduction: { algorithm: 'ring' } })");
}

export function checkTrainOptions(o: unknown): void {
  validate(trainOptionsSchema, o, 'train options', 'Example: rt.train({ model, optimizer: { type: "sgd", lr: 0.1 }, data: mnist({ batchSize: 128 }), epochs: 1 })');
}
