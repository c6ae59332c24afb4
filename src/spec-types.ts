// The model spec, its layers and the optimizer as named, documented types (what an editor shows), each checked at
// compile time against the zod schema that validates it (src/model/spec.ts, optimizer.ts, schedule.ts): if a
// schema changes, this file stops compiling until the types say the same.
import type { z } from 'zod';
import type { initSchema, layerSchema, modelSchema } from './model/spec.js';
import type { optimizerSchema } from './model/optimizer.js';
import type { scheduleSchema } from './model/schedule.js';

/** How a tensor is initialised (TF 1's initialisers); seeded, so the same seed gives the same weights bit for bit. */
export type InitSpec =
  | { type: 'truncatedNormal'; stddev: number; mean?: number }
  | { type: 'normal'; stddev: number; mean?: number }
  | { type: 'constant'; value: number }
  | { type: 'zeros' }
  | { type: 'glorotUniform' }
  | { type: 'glorotNormal' };

export type Activation = 'linear' | 'relu' | 'sigmoid' | 'tanh';

/** Fully connected: kernel [inputs, units] (default Glorot uniform) and bias [units] (default zeros). */
export interface DenseLayer {
  type: 'dense';
  name?: string;
  units: number;
  /** Default 'linear'. */
  activation?: Activation;
  kernelInit?: InitSpec;
  biasInit?: InitSpec;
  /** L2 penalty weight on the kernel (TF's weight decay; default 0). */
  l2?: number;
}

/** An activation on its own (in place after a linear dense or conv layer). */
export interface ActivationLayer {
  type: 'relu' | 'sigmoid' | 'tanh';
  name?: string;
}

/** Flattens the per-example shape to one dimension (no copy). */
export interface FlattenLayer {
  type: 'flatten';
  name?: string;
}

/** 2-D convolution over NHWC images; the kernel is TF's HWIO [KH, KW, C, filters]. */
export interface Conv2dLayer {
  type: 'conv2d';
  name?: string;
  filters: number;
  kernel: [number, number];
  /** Default [1, 1]. */
  strides?: [number, number];
  /** Default 'same'. */
  padding?: 'same' | 'valid';
  activation?: Activation;
  kernelInit?: InitSpec;
  biasInit?: InitSpec;
  l2?: number;
}

/** Max pooling over NHWC images; strides default to the window, padding to 'valid'. */
export interface MaxPoolLayer {
  type: 'maxpool';
  name?: string;
  pool: [number, number];
  strides?: [number, number];
  padding?: 'same' | 'valid';
}

/** TF's tf.nn.lrn over the channel dimension (defaults are TF's: depthRadius 5, bias 1, alpha 1, beta 0.5). */
export interface LrnLayer {
  type: 'lrn';
  name?: string;
  depthRadius?: number;
  bias?: number;
  alpha?: number;
  beta?: number;
}

/** Inverted dropout at training (drops `rate` of the values); identity at evaluation. */
export interface DropoutLayer {
  type: 'dropout';
  name?: string;
  rate: number;
  seed?: number;
}

/** Reinterprets the per-example shape (row-major; the element count must not change). */
export interface ReshapeLayer {
  type: 'reshape';
  name?: string;
  shape: number[];
}

export type LayerSpec = DenseLayer | ActivationLayer | FlattenLayer | Conv2dLayer | MaxPoolLayer | LrnLayer | DropoutLayer | ReshapeLayer;

/** A model: the per-example input shape, the layers in order, the loss. JSON-serialisable (docs/model-spec.md). */
export interface ModelSpec {
  /** Default 'model'. */
  name?: string;
  /** [D] for vectors, [H, W, C] for images. */
  input: { shape: number[] };
  layers: LayerSpec[];
  /** Default 'softmaxCrossEntropy' (integer class labels); 'mean' averages the output (seed 001's blocks). */
  loss?: 'softmaxCrossEntropy' | 'mean';
}

/** A learning rate that changes with the step (TF 1's schedules). */
export type ScheduleSpec =
  | { type: 'constant'; lr: number }
  /** lr · decayRate^(step / decaySteps), in whole periods when `staircase`. */
  | { type: 'exponential'; lr: number; decayRate: number; decaySteps: number; staircase?: boolean }
  /** values[i] while step <= boundaries[i]; values.length = boundaries.length + 1. */
  | { type: 'piecewise'; boundaries: number[]; values: number[] }
  | { type: 'cosine'; lr: number; decaySteps: number; minLr?: number };

/** A learning rate: a number, or a schedule. */
export type LearningRate = number | ScheduleSpec;

export interface SgdOptimizer {
  type: 'sgd';
  lr: LearningRate;
}

export interface MomentumOptimizer {
  type: 'momentum';
  lr: LearningRate;
  /** Default 0.9. */
  momentum?: number;
  nesterov?: boolean;
}

export interface AdamOptimizer {
  type: 'adam';
  lr: LearningRate;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export type OptimizerSpec = SgdOptimizer | MomentumOptimizer | AdamOptimizer;

// ---- compile-time checks: each named type accepts exactly what its schema accepts ---------------------------
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const checks: [
  Same<InitSpec, z.input<typeof initSchema>>,
  Same<LayerSpec, z.input<typeof layerSchema>>,
  Same<ModelSpec, z.input<typeof modelSchema>>,
  Same<ScheduleSpec, z.input<typeof scheduleSchema>>,
  Same<OptimizerSpec, z.input<typeof optimizerSchema>>,
] = [true, true, true, true, true];
void checks;
