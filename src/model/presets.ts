// Training settings of the seed models (the model specs are in spec.ts: cifar10Cnn, blockNetwork, mnistMlp).
import type { OptimizerSpec } from './optimizer.js';

/**
 * TF's cifar10 tutorial: SGD from 0.1, decayed by 0.1 every 350 epochs, staircase (decaySteps = the steps in 350
 * epochs of `examplesPerEpoch` at `batchSize`, as int(NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN / batch_size * 350)).
 */
export function cifar10Training(opts: { batchSize?: number; examplesPerEpoch?: number; lr?: number; epochsPerDecay?: number; decayRate?: number } = {}): { optimizer: OptimizerSpec } {
  const batch = opts.batchSize ?? 128;
  const perEpoch = opts.examplesPerEpoch ?? 50_000;
  const decaySteps = Math.max(1, Math.floor((perEpoch / batch) * (opts.epochsPerDecay ?? 350)));
  return { optimizer: { type: 'sgd', lr: { type: 'exponential', lr: opts.lr ?? 0.1, decayRate: opts.decayRate ?? 0.1, decaySteps, staircase: true } } };
}

/** Seed 001: Adam (lr 1e-4, beta1 0.5, beta2 0.9), gradients clipped by global norm 5.0. */
export function blockTraining(): { optimizer: OptimizerSpec; clipNorm: number } {
  return { optimizer: { type: 'adam', lr: 1e-4, beta1: 0.5, beta2: 0.9 }, clipNorm: 5.0 };
}
