// towerline's public surface: what an app needs to train on several devices. Lower-level pieces (a Tower on one
// device, the native and reference backends, schedule building blocks) are under 'towerline/advanced'.
import { blockNetwork as blockNetworkSpec, cifar10Cnn as cifar10CnnSpec, mnistMlp as mnistMlpSpec } from './model/spec.js';
import { blockTraining as blockTrainingPreset, cifar10Training as cifar10TrainingPreset } from './model/presets.js';
import type { ModelSpec, OptimizerSpec } from './spec-types.js';

export { createRuntime, Runtime } from './runtime.js';
export type { RuntimeOptions, TrainOptions, GuardOptions, CheckpointOptions, ReductionOptions } from './options.js';
export type { TrainRun, StepEvent, RunEvent, RunSummary, TowerTimings, StepTimings } from './events.js';
export type { ReplicaReport } from './coordinator/replicas.js';

// Data inputs.
export { mnist, cifar10, blocks, type DataInput, type MnistInput, type CifarInput, type BlocksInput } from './data/inputs.js';

// Models and optimizers: named types (checked against the validating schemas) and the seed models.
export type {
  ModelSpec,
  LayerSpec,
  DenseLayer,
  ActivationLayer,
  FlattenLayer,
  Conv2dLayer,
  MaxPoolLayer,
  LrnLayer,
  DropoutLayer,
  ReshapeLayer,
  InitSpec,
  Activation,
  OptimizerSpec,
  SgdOptimizer,
  MomentumOptimizer,
  AdamOptimizer,
  LearningRate,
  ScheduleSpec,
} from './spec-types.js';
/** Seed 004's MNIST network: 784-hidden-10, ReLU, L2 1e-4 on the weights (hidden = 500 by default). */
export const mnistMlp: (hidden?: number) => ModelSpec = mnistMlpSpec;
/** Seed 000's CIFAR-10 network (TF's cifar10 tutorial) on 24x24x3 crops, or `inputSize` crops. */
export const cifar10Cnn: (opts?: { inputSize?: number }) => ModelSpec = cifar10CnnSpec;
/** Seed 001's block network: `blocks` sigmoid layers of `width` units, mean output as the loss. */
export const blockNetwork: (opts?: { blocks?: number; width?: number }) => ModelSpec = blockNetworkSpec;
/** TF's cifar10 tutorial's training settings: SGD from 0.1, decayed by 0.1 every 350 epochs. */
export const cifar10Training: (opts?: { batchSize?: number; examplesPerEpoch?: number; lr?: number; epochsPerDecay?: number; decayRate?: number }) => { optimizer: OptimizerSpec } =
  cifar10TrainingPreset;
/** Seed 001's settings: Adam (lr 1e-4, beta1 0.5, beta2 0.9), gradients clipped by global norm 5.0. */
export const blockTraining: () => { optimizer: OptimizerSpec; clipNorm: number } = blockTrainingPreset;
export { parseModelSpec } from './model/spec.js';
export { CIFAR10_CLASSES } from './data/cifar10.js';

// Reduction strategies: built in, or your own (a strategy plans a Schedule; every schedule is validated first).
export { ring } from './scheduler/ring.js';
export { tree } from './scheduler/tree.js';
export { naive } from './scheduler/naive.js';
export { REDUCE, COPY, type ReductionStrategy, type Schedule, type ScheduleRequest, type CollStep } from './scheduler/schedule.js';

// Errors: each with a stable `code`.
export {
  TowerlineError,
  ConfigError,
  DataError,
  CheckpointError,
  ScheduleError,
  TowerError,
  NonFiniteError,
  ReplicaMismatchError,
  WatchdogError,
  RuntimeClosedError,
  OutputError,
} from './errors.js';
export { addonInfo, type AddonInfo } from './native/load.js';
