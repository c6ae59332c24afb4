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
const pair = z.tuple([positiveInt, positiveInt]);
const paddingSchema = z.enum(['same', 'valid']);

/** 2-D convolution over NHWC images; the kernel is TF's HWIO [KH, KW, C, filters]. */
const conv2dSchema = z
  .object({
    type: z.literal('conv2d'),
    name: z.string().min(1).optional(),
    filters: positiveInt,
    kernel: pair,
    strides: pair.default([1, 1]),
    padding: paddingSchema.default('same'),
    activation: activationSchema.default('linear'),
    kernelInit: initSchema.default({ type: 'glorotUniform' }),
    biasInit: initSchema.default({ type: 'zeros' }),
    l2: z.number().min(0, 'expected a weight >= 0').default(0),
  })
  .strict();

/** Max pooling over NHWC images; strides default to the window. */
const maxpoolSchema = z
  .object({ type: z.literal('maxpool'), name: z.string().optional(), pool: pair, strides: pair.optional(), padding: paddingSchema.default('valid') })
  .strict();

/** TF's tf.nn.lrn over the last (channel) dimension; defaults are TF's. */
const lrnSchema = z
  .object({
    type: z.literal('lrn'),
    name: z.string().optional(),
    depthRadius: z.number().int().min(0).default(5),
    bias: z.number().default(1),
    alpha: z.number().default(1),
    beta: z.number().default(0.5),
  })
  .strict();

/** Inverted dropout at training (drops `rate` of the values, scales the rest by 1/(1 − rate)); identity at evaluation. */
const dropoutSchema = z
  .object({
    type: z.literal('dropout'),
    name: z.string().optional(),
    rate: z.number().min(0, 'expected a rate in [0, 1)').lt(1, 'expected a rate in [0, 1)'),
    seed: z.number().int().min(0).optional(),
  })
  .strict();

/** Reinterprets the per-example shape (row-major; the element count must not change). */
const reshapeSchema = z.object({ type: z.literal('reshape'), name: z.string().optional(), shape: z.array(positiveInt).min(1) }).strict();

export const layerSchema = z.discriminatedUnion('type', [denseSchema, activationLayerSchema, flattenSchema, conv2dSchema, maxpoolSchema, lrnSchema, dropoutSchema, reshapeSchema]);
export type LayerSpec = z.infer<typeof layerSchema>;
export type DenseSpec = z.infer<typeof denseSchema>;
export type Conv2dSpec = z.infer<typeof conv2dSchema>;

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

/**
 * Seed 000's CIFAR-10 network (TF's cifar10 tutorial, 24x24x3 crops): conv 5x5x64 ReLU → maxpool 3x3/2 SAME → LRN →
 * conv 5x5x64 ReLU (bias 0.1) → LRN → maxpool 3x3/2 SAME → fully connected 384 → 192 → 10, with the tutorial's
 * initialisers and L2 0.004 on the two hidden fully connected kernels.
 */
export function cifar10Cnn(opts: { inputSize?: number } = {}): ModelSpec {
  const size = opts.inputSize ?? 24;
  const lrn = { type: 'lrn' as const, depthRadius: 4, bias: 1.0, alpha: 0.001 / 9.0, beta: 0.75 };
  const pool = { type: 'maxpool' as const, pool: [3, 3] as [number, number], strides: [2, 2] as [number, number], padding: 'same' as const };
  const conv = (name: string, bias: number) => ({
    type: 'conv2d' as const,
    name,
    filters: 64,
    kernel: [5, 5] as [number, number],
    strides: [1, 1] as [number, number],
    padding: 'same' as const,
    activation: 'relu' as const,
    kernelInit: { type: 'truncatedNormal' as const, stddev: 5e-2 },
    biasInit: { type: 'constant' as const, value: bias },
  });
  const fc = (name: string, units: number) => ({
    type: 'dense' as const,
    name,
    units,
    activation: 'relu' as const,
    kernelInit: { type: 'truncatedNormal' as const, stddev: 0.04 },
    biasInit: { type: 'constant' as const, value: 0.1 },
    l2: 0.004,
  });
  return {
    name: 'cifar10-cnn',
    input: { shape: [size, size, 3] },
    layers: [
      conv('conv1', 0.0),
      { ...pool, name: 'pool1' },
      { ...lrn, name: 'norm1' },
      conv('conv2', 0.1),
      { ...lrn, name: 'norm2' },
      { ...pool, name: 'pool2' },
      { type: 'flatten' },
      fc('local3', 384),
      fc('local4', 192),
      { type: 'dense', name: 'softmax_linear', units: 10, kernelInit: { type: 'truncatedNormal', stddev: 1 / 192.0 }, biasInit: { type: 'zeros' } },
    ],
    loss: 'softmaxCrossEntropy',
  };
}

/** Seed 001's block network: `blocks` fully connected sigmoid layers of `width` units on `width` inputs, mean of the output as the loss. */
export function blockNetwork(opts: { blocks?: number; width?: number } = {}): ModelSpec {
  const blocks = opts.blocks ?? 6, width = opts.width ?? 1000;
  return {
    name: `blocks-${blocks}x${width}`,
    input: { shape: [width] },
    layers: Array.from({ length: blocks }, (_, i) => ({ type: 'dense' as const, name: `block${i + 1}`, units: width, activation: 'sigmoid' as const })),
    loss: 'mean',
  };
}
