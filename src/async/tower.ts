// A tower as the asynchronous loop drives it: pull the weights and compute the gradient of a batch, then push it.
// A tower of this process goes through its tower port; a tower in a worker process through the link
// (src/async/remote-tower.ts). Either way the bytes move natively, never through JS.
import { TowerError } from '../errors.js';
import type { TowerPort } from '../tower-port/port.js';
import type { FaultSpec, StepTimings } from '../tower-port/protocol.js';
import { nativeClockOffset } from '../tower-port/worker-port.js';
import type { NumberedBatch } from './batches.js';
import type { Applied, Pulled } from './native.js';
import type { ServerTower } from './server.js';

/** One gradient, computed: what its pull saw, its loss and its local norm, its phases. */
export interface Computed {
  pulled: Pulled;
  /** Several servers: the largest staleness this push has at the servers other than the lead (Note [Staleness]). */
  otherStaleness?: number;
  /** This tower's data loss on its batch (already its mean), the L2 loss of the weights it pulled, and its
   *  gradient's global squared norm with L2 (Note [Global norm across shards]). */
  loss: number;
  regLoss: number;
  normSq: number;
  /** Phases on the coordinator's clock (performance.now()). */
  timings: StepTimings;
  /** The pull, on the coordinator's clock. */
  pullMs: [number, number];
}

export interface AsyncTower {
  /** The label events and errors name the tower by ('cpu:1', 'cpu:0 of worker rank 2'). */
  readonly device: string;
  /** Settles with the cause when the tower dies (never, for towers whose death shows in their calls). */
  readonly death: Promise<Error>;
  /** Pulls the master weights and computes the gradient of `batch`; rejects naming the tower (deadline included). */
  compute(batch: NumberedBatch, deadlineMs: number, fault: FaultSpec | undefined): Promise<Computed>;
  /** Pushes the last gradient; resolves once the server took it. */
  push(): Promise<Applied>;
  /** After a non-finite push: the first tensor whose local gradient was not finite. */
  firstNonFinite(): Promise<string | undefined>;
  /** The tower is done (the run ended, or it was dropped: `why`). */
  release(why?: string): Promise<void>;
}

/** Rejects with a TowerError naming `device` (as `who`, when given: a parameter server) when `p` takes longer than `ms`. */
export async function withDeadline<T>(p: Promise<T>, ms: number, device: string, call: string, who?: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TowerError(device, call, `no answer within ${ms} ms (deadline)`, who)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A tower of this process: its port steps the gradient program; the server pulls into and pushes from its arenas. */
export class LocalAsyncTower implements AsyncTower {
  readonly device: string;
  readonly death: Promise<Error>;
  private readonly arenas: { weightArena: number; gradArena: number };
  private readonly offset = nativeClockOffset();
  private normSq = NaN;

  constructor(
    private readonly port: TowerPort,
    private readonly rank: number,
    private readonly server: ServerTower,
    private readonly dataset: string,
    private readonly crop?: (batch: NumberedBatch) => Int32Array,
  ) {
    this.device = port.device;
    this.death = port.death;
    const ep = port.endpoint();
    if (ep.kind !== 'native') throw new Error(`mode 'async' needs native towers; ${port.device} is a ${ep.kind} tower`);
    this.arenas = ep.arenas;
  }

  async compute(batch: NumberedBatch, deadlineMs: number, fault: FaultSpec | undefined): Promise<Computed> {
    const pulled = await withDeadline(this.server.pull(this.rank, this.arenas.weightArena), deadlineMs, this.device, 'pull').catch((e: unknown) => {
      throw e instanceof TowerError ? e : new TowerError(this.device, 'pull', e instanceof Error ? e.message : String(e));
    });
    const B = batch.indices.length;
    const reply = await this.port.step(
      { dataset: this.dataset, indices: batch.indices, ...(this.crop ? { crop: this.crop(batch) } : {}), lr: 0, t: batch.number + 1, gradScale: 1 / B, variant: 'gradient' },
      deadlineMs,
      fault,
    );
    this.normSq = Math.fround(reply.gradNorm * reply.gradNorm); // the f32 read, exactly (its sqrt squared)
    return {
      pulled,
      loss: reply.loss,
      regLoss: reply.regLoss,
      normSq: this.normSq,
      timings: reply.timings,
      pullMs: [pulled.startMs + this.offset, pulled.endMs + this.offset],
    };
  }

  push(): Promise<Applied> {
    return this.server.push(this.rank, this.arenas.gradArena, this.normSq).then((a) => ({ ...a, startMs: a.startMs + this.offset, endMs: a.endMs + this.offset }));
  }

  firstNonFinite(): Promise<string | undefined> {
    return this.port.firstNonFinite();
  }

  async release(): Promise<void> {
    // The port stays open: the runtime owns it and closes it.
  }
}
