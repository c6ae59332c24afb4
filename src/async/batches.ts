// The asynchronous mode's batches: numbered 0, 1, 2, ... in the run's data order (the same seeded order as the
// synchronous mode, src/data/batches.ts), handed to whichever tower asks next. Batch n is computable anywhere from
// (seed, n) alone, so a worker in another process builds the indices of the batch number the server sent.
import { batchesPerEpoch, epochOrder } from '../data/batches.js';

export interface NumberedBatch {
  /** 0-based position in the run's data order. */
  number: number;
  epoch: number;
  /** Index within the epoch. */
  index: number;
  indices: Int32Array;
}

export interface BatchOrder {
  count: number;
  batchSize: number;
  lastBatch: 'drop' | 'keep';
  shuffle: boolean;
  seed: number;
}

/** Batch `number` of the data order (random access: one epoch's order is kept between calls). */
export class BatchIndex {
  readonly perEpoch: number;
  private epoch = -1;
  private order: Int32Array = new Int32Array(0);

  constructor(private readonly o: BatchOrder) {
    this.perEpoch = batchesPerEpoch(o.count, o.batchSize, o.lastBatch);
  }

  at(number: number): NumberedBatch {
    const epoch = Math.floor(number / this.perEpoch);
    const index = number % this.perEpoch;
    if (epoch !== this.epoch) {
      this.order = epochOrder(this.o.count, this.o.seed, epoch, this.o.shuffle);
      this.epoch = epoch;
    }
    const begin = index * this.o.batchSize;
    return { number, epoch, index, indices: this.order.slice(begin, Math.min(begin + this.o.batchSize, this.o.count)) };
  }
}

/**
 * Hands out batch numbers from `start` up to `total` (exclusive), one per tower iteration; a batch whose tower was
 * dropped before its push was taken is given back and handed out again, so the run still takes exactly `total`
 * pushes.
 */
export class BatchDispenser {
  private next: number;
  private readonly returned: number[] = [];

  constructor(
    start: number,
    readonly total: number,
  ) {
    this.next = start;
  }

  take(): number | undefined {
    if (this.returned.length > 0) return this.returned.shift();
    if (this.next >= this.total) return undefined;
    return this.next++;
  }

  giveBack(n: number): void {
    this.returned.push(n);
    this.returned.sort((a, b) => a - b);
  }

  /** No batch is left to hand out (some may still be in flight). */
  get exhausted(): boolean {
    return this.returned.length === 0 && this.next >= this.total;
  }

  /** Stop handing out batches (stop(), or a failure). */
  end(): void {
    this.next = this.total;
    this.returned.length = 0;
  }
}
