// The JSON-serialisable model spec and its schema: layers, sizes, activations, initialisers, per-layer L2.
import { z } from 'zod';
import { validate } from '../util/validate.js';

const positiveInt = z.number().int('expected an integer').positive('expected a positive integer');

export const initSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('truncatedNormal'), stddev: z.number().positive(), mean: z.number().default(0) }).strict(),
  z.object({ type: z.literal('normal'), stddev: z.number().positive(), mean: z.number().default(0) }).strict(),
  z.object({ type: z.literal('constant'), value: z.number().refine(Number.isFinite, 'expected a finite number') }).strict(),
  z.object({ type: z.literal('zeros') }).strict(),
  z.object({ type: z.literal('glorotUniform') }).strict(),
  z.object({ type: z.literal('glorotNormal') }).strict(),
]);
export type InitSpec = z.infer<typeof initSchema>;

export const activationSchema = z.enum(['linear', 'relu', 'sigmoid', 'tanh']);
export type Activation = z.infer<typeof activationSchema>;

const denseSchema = z
  .object({
    type: z.literal('dense'),
    name: z.string().min(1).optional(),
    units: positiveInt,
    activation: activationSchema.default('linear'),
    kernelInit: initSchema.default({ type: 'glorotUniform' }),
    biasInit: initSchema.default({ type: 'zeros' }),
    l2: z.number().min(0, 'expected a weight >= 0').default(0),
  })
  .strict();

const activationLayerSchema = z.object({ type: z.enum(['relu', 'sigmoid', 'tanh']), name: z.string().optional() }).strict();
const flattenSchema = z.object({ type: z.literal('flatten'), name: z.string().optional() }).strict();

export const layerSchema = z.discriminatedUnion('type', [denseSchema, activationLayerSchema, flattenSchema]);
export type LayerSpec = z.infer<typeof layerSchema>;
export type DenseSpec = z.infer<typeof denseSchema>;

export const modelSchema = z
  .object({
    name: z.string().default('model'),
    input: z.object({ shape: z.array(positiveInt).min(1, 'expected at least one dimension') }).strict(),
    layers: z.array(layerSchema).min(1, 'expected at least one layer'),
    loss: z.enum(['softmaxCrossEntropy', 'mean']).default('softmaxCrossEntropy'),
  })
  .strict();

export type ModelSpec = z.input<typeof modelSchema>;
export type ResolvedModelSpec = z.infer<typeof modelSchema>;

/** Validates a model spec (e.g. parsed JSON). Errors name the field, the expectation and the given value. */
export function parseModelSpec(input: unknown): ResolvedModelSpec {
  return validate(modelSchema, input, 'model', 'See docs/model-spec.md for the format.');
}

/** Seed 004's MNIST network: 784-500-10, ReLU, L2 1e-4 on the weights. */
export function mnistMlp(hidden = 500): ModelSpec {
  return {
    name: `mnist-784-${hidden}-10`,
    input: { shape: [784] },
    layers: [
      { type: 'dense', units: hidden, activation: 'relu', kernelInit: { type: 'truncatedNormal', stddev: 0.1 }, biasInit: { type: 'constant', value: 0.1 }, l2: 1e-4 },
      { type: 'dense', units: 10, kernelInit: { type: 'truncatedNormal', stddev: 0.1 }, biasInit: { type: 'constant', value: 0.1 }, l2: 1e-4 },
    ],
    loss: 'softmaxCrossEntropy',
  };
}
