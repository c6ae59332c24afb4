// The run's plan: how many steps and epochs, and which batch comes next, from any position (resumable).
import { batchPlans, batchesPerEpoch, type BatchPlan } from '../data/batches.js';
import type { Position } from './checkpoints.js';

export interface PlanOptions {
  count: number;
  batchSize: number;
  lastBatch: 'drop' | 'keep';
  shuffle: boolean;
  seed: number;
  epochs?: number;
  steps?: number;
}

export class RunPlan {
  readonly perEpoch: number;
  readonly epochs: number;
  readonly totalSteps: number;

  constructor(private readonly o: PlanOptions) {
    this.perEpoch = batchesPerEpoch(o.count, o.batchSize, o.lastBatch);
    this.epochs = o.epochs ?? Math.ceil((o.steps ?? 0) / this.perEpoch);
    this.totalSteps = o.steps ?? this.epochs * this.perEpoch;
  }

  /** The batches from `from` to the end of the last epoch (the order depends only on seed and epoch). */
  batches(from: Position): Generator<BatchPlan> {
    const { count, batchSize, seed, lastBatch, shuffle } = this.o;
    return batchPlans({ count, batchSize, seed, lastBatch, shuffle, epochs: this.epochs, startEpoch: from.epoch, startBatch: from.batch });
  }

  /** The position after `b`. */
  after(b: BatchPlan): Position {
    return b.index + 1 === this.perEpoch ? { epoch: b.epoch + 1, batch: 0 } : { epoch: b.epoch, batch: b.index + 1 };
  }

  endsEpoch(b: BatchPlan): boolean {
    return b.index === this.perEpoch - 1;
  }

  /** True once `step` steps are done (a steps limit; an epochs limit ends with the batches). */
  reached(step: number): boolean {
    return this.o.steps !== undefined && step >= this.o.steps;
  }
}
