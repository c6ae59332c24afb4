// Seeded, resumable epoch ordering and mini-batch planning over a data set of `count` examples.

import { Rng } from '../util/rng.js';

export interface BatchPlan {
  epoch: number;
  /** Batch index within the epoch. */
  index: number;
  /** Example indices; length = this batch's size. */
  indices: Int32Array;
}

export type LastBatch = 'drop' | 'keep';

export interface BatchPlanOptions {
  count: number;
  batchSize: number;
  seed: number;
  /** Default true. */
  shuffle?: boolean;
  /** 'keep': a final smaller batch of count % batchSize examples; 'drop': those examples are skipped that epoch. */
  lastBatch: LastBatch;
  startEpoch?: number;
  startBatch?: number;
  /** Total epochs of the run (epochs 0..epochs-1), so a resumed run ends where the original would; undefined = forever. */
  epochs?: number;
}

const MAX_COUNT = 0x7fffffff; // indices are stored in an Int32Array

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 0 || count > MAX_COUNT) {
    throw new RangeError(`count must be an integer in 0..${MAX_COUNT}, got ${String(count)}`);
  }
  if (count === 0) throw new RangeError('the data set is empty (count = 0): there is nothing to batch');
}

function checkNonNegInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${String(v)}`);
}

/** Example order for one epoch; depends only on (count, seed, epoch), so a resumed run reproduces it. */
export function epochOrder(count: number, seed: number, epoch: number, shuffle: boolean): Int32Array {
  checkCount(count);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${String(seed)}`);
  checkNonNegInt('epoch', epoch);
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  // A fork per epoch: no state carries across epochs, so epoch e is computable without replaying 0..e-1.
  if (shuffle) new Rng(seed).fork(epoch).shuffle(order);
  return order;
}

export function batchesPerEpoch(count: number, batchSize: number, lastBatch: LastBatch): number {
  checkCount(count);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be an integer >= 1, got ${String(batchSize)}`);
  }
  if (lastBatch === 'keep') return Math.ceil(count / batchSize);
  if (lastBatch === 'drop') {
    if (batchSize > count) {
      throw new RangeError(
        `batchSize ${batchSize} > count ${count} with lastBatch 'drop': no batch would ever be produced; ` +
          `use a batchSize <= ${count} or lastBatch 'keep'`,
      );
    }
    return Math.floor(count / batchSize);
  }
  throw new RangeError(`lastBatch must be 'drop' or 'keep', got ${JSON.stringify(lastBatch)}`);
}

/** Batch plans from (startEpoch, startBatch) onwards; identical to the tail of an uninterrupted run. */
// A plain function returning a generator so bad options throw at the call, not at the first next().
export function batchPlans(opts: BatchPlanOptions): Generator<BatchPlan> {
  const { count, batchSize, seed, lastBatch } = opts;
  const shuffle = opts.shuffle ?? true;
  const startEpoch = opts.startEpoch ?? 0;
  const startBatch = opts.startBatch ?? 0;
  const perEpoch = batchesPerEpoch(count, batchSize, lastBatch);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${String(seed)}`);
  checkNonNegInt('startEpoch', startEpoch);
  checkNonNegInt('startBatch', startBatch);
  if (startBatch >= perEpoch) {
    throw new RangeError(`startBatch ${startBatch} is out of range: an epoch has ${perEpoch} batches (0..${perEpoch - 1})`);
  }
  const epochs = opts.epochs;
  if (epochs !== undefined) {
    checkNonNegInt('epochs', epochs);
    const done = startEpoch === epochs && startBatch === 0; // resuming a finished run: nothing left
    if (startEpoch >= epochs && !done) {
      throw new RangeError(`startEpoch ${startEpoch} (batch ${startBatch}) is past the end of a ${epochs}-epoch run`);
    }
  }

  return (function* (): Generator<BatchPlan> {
    for (let epoch = startEpoch; epochs === undefined || epoch < epochs; epoch++) {
      const order = epochOrder(count, seed, epoch, shuffle);
      for (let index = epoch === startEpoch ? startBatch : 0; index < perEpoch; index++) {
        const begin = index * batchSize;
        // slice, not subarray: a consumer mutating its batch must not corrupt later ones.
        yield { epoch, index, indices: order.slice(begin, Math.min(begin + batchSize, count)) };
      }
    }
  })();
}
