// The asynchronous training loop: every tower loops on its own (wait at the staleness gate, take the next batch,
// pull and compute, push), the server applies each push as it arrives, and the loop reports every update, drops
// towers that die or miss their deadline, and runs the duties of chosen versions (evaluation, checkpoints) while
// the pushes are held back. Note [Parameter server] (cpp/ps/server.h), Note [Staleness] (gate.ts).
import { NonFiniteError, TowerError } from '../errors.js';
import type { ResolvedTrainOptions } from '../options.js';
import type { RunEvent, RunSummary, StepEvent } from '../events.js';
import type { StepRecord } from '../observers/observer.js';
import type { FaultPlan } from '../coordinator/step.js';
import { BatchDispenser, type BatchIndex, type NumberedBatch } from './batches.js';
import { StalenessGate } from './gate.js';
import { LockStepRounds } from './rounds.js';
import type { AsyncCheckpoints } from './checkpoint.js';
import type { Applied } from './native.js';
import type { ServerTower } from './server.js';
import type { AsyncSettings } from './settings.js';
import type { AsyncTower, Computed } from './tower.js';

export interface AsyncLoopContext {
  o: ResolvedTrainOptions;
  s: AsyncSettings;
  towers: AsyncTower[];
  server: ServerTower;
  batches: BatchIndex;
  totalSteps: number;
  epochs: number;
  /** The version to start from (0, or the checkpoint's). */
  start: number;
  checkpoints: AsyncCheckpoints;
  /** The server holds the test set. */
  evaluate: boolean;
  /** Deadline of one tower iteration (pull and gradient), ms. */
  deadlineMs: number;
  faults: FaultPlan | undefined;
  /** Work waiting for a gap between updates (state reads queued by the runtime): checked after every update. */
  between?: { pending(): boolean; run(): Promise<void> };
  stopped(): boolean;
  emitStep(r: StepRecord): void;
  emitEvent(e: RunEvent): void;
}

export class AsyncLoop {
  private readonly gate: StalenessGate;
  /** maxStaleness 0: a round's pushes after all its computes, in batch order (Note [Lock-step rounds]). */
  private readonly rounds: LockStepRounds | undefined;
  private readonly dispenser: BatchDispenser;
  private readonly rates: number[];
  /** Versions handed to pushes so far: the server takes pushes in the order they are made, so it is exact. */
  private submitted: number;
  private savedAt = -1;
  private hold: Promise<void> | undefined;
  private inflight = 0;
  private changed: Array<() => void> = [];
  private failure: Error | undefined;
  private ended = false;
  private loss = NaN;
  private evaluation: RunSummary['evaluation'];

  constructor(private readonly c: AsyncLoopContext) {
    this.gate = new StalenessGate(c.towers.length, c.s.maxStaleness);
    this.rounds = c.s.maxStaleness === 0 ? new LockStepRounds(() => this.gate.live) : undefined;
    this.dispenser = new BatchDispenser(c.start, c.totalSteps);
    this.rates = new Array<number>(c.towers.length).fill(0);
    this.submitted = c.start;
  }

  /** The server's version (steps taken). */
  get step(): number {
    return this.submitted;
  }

  async run(): Promise<RunSummary> {
    const { towers } = this.c;
    towers.forEach((t, r) => void t.death.then((e) => this.drop(r, e.message)));
    await Promise.all(towers.map((_, r) => this.towerLoop(r)));
    this.ended = true; // towers that die from now on (the runtime closing) are no news
    await Promise.allSettled(towers.map((t, r) => t.release(this.gate.isAlive(r) ? undefined : 'dropped')));
    if (this.failure) throw this.failure;
    if (this.submitted !== this.savedAt) await this.save();
    return { steps: this.submitted, epochs: this.c.epochs, finalLoss: this.loss, ...(this.evaluation ? { evaluation: this.evaluation } : {}) };
  }

  private async towerLoop(rank: number): Promise<void> {
    const t = this.c.towers[rank]!;
    while (!this.failure && this.gate.isAlive(rank)) {
      const waitFrom = performance.now();
      await this.gate.wait(rank);
      if (this.failure || !this.gate.isAlive(rank)) return;
      if (this.c.stopped()) this.dispenser.end();
      const n = this.dispenser.take();
      if (n === undefined) {
        if (this.inflight === 0) {
          this.gate.close(); // nothing left to compute: towers held at the gate by this one must not wait for it
          return;
        }
        this.rounds?.waiting(true);
        await new Promise<void>((r) => this.changed.push(r)); // a batch may come back from a dropped tower
        this.rounds?.waiting(false);
        continue;
      }
      this.inflight++;
      try {
        await this.iterate(rank, t, this.c.batches.at(n), waitFrom);
      } finally {
        this.inflight--;
        this.changed.splice(0).forEach((f) => f());
      }
    }
  }

  /** One iteration of tower `rank`: compute (a failure drops the tower and gives its batch back), push, report. */
  private async iterate(rank: number, t: AsyncTower, batch: NumberedBatch, waitFrom: number): Promise<void> {
    const start = performance.now();
    let computed: Computed;
    try {
      computed = await t.compute(batch, this.c.deadlineMs, this.c.faults?.(this.gate.clock(rank) + 1, rank));
    } catch (e) {
      this.dispenser.giveBack(batch.number);
      this.drop(rank, e instanceof Error ? e.message : String(e));
      return;
    }
    await this.rounds?.park(batch.number);
    try {
      await this.push(rank, t, batch, computed, waitFrom, start);
    } finally {
      this.rounds?.done(batch.number);
    }
  }

  /** Pushes a computed gradient (a tower dropped meanwhile gives its batch back), reports it, runs its duties. */
  private async push(rank: number, t: AsyncTower, batch: NumberedBatch, computed: Computed, waitFrom: number, start: number): Promise<void> {
    while (this.hold) await this.hold;
    if (this.failure || !this.gate.isAlive(rank)) {
      this.dispenser.giveBack(batch.number);
      return;
    }
    const version = ++this.submitted;
    const duty = this.dutyAt(version);
    let release = () => {};
    if (duty) this.hold = new Promise<void>((r) => (release = r));
    try {
      const pushFrom = performance.now();
      let applied: Applied;
      try {
        applied = await t.push();
      } catch (e) {
        // The server did not take it (the tower died between its gradient and its push: its arena is gone).
        this.submitted--;
        this.dispenser.giveBack(batch.number);
        this.drop(rank, e instanceof Error ? e.message : String(e));
        return;
      }
      this.gate.advance(rank, applied.clock);
      this.report(rank, t, batch, computed, applied, { waitFrom, start, pushFrom });
      if (applied.skipped || !Number.isFinite(computed.loss)) await this.onNonFinite(t, applied, computed);
      if (duty) await this.duties(applied.version);
      if (this.c.between?.pending()) await this.c.between.run();
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    } finally {
      if (duty) {
        this.hold = undefined;
        release();
      }
    }
  }

  private dutyAt(v: number): boolean {
    const every = this.c.o.checkpoint?.everySteps;
    return (every !== undefined && v % every === 0) || v % this.c.batches.perEpoch === 0;
  }

  /** Work at version v, with every push before it taken and none after it: checkpoints, the end of an epoch. */
  private async duties(v: number): Promise<void> {
    const every = this.c.o.checkpoint?.everySteps;
    if (every !== undefined && v % every === 0) await this.save();
    if (v % this.c.batches.perEpoch !== 0) return;
    const epoch = v / this.c.batches.perEpoch - 1;
    this.c.emitEvent({ type: 'epoch', epoch, steps: v });
    if (!this.c.evaluate) return;
    const e = await this.c.server.evaluate('test', this.c.o.emaDecay !== undefined);
    this.evaluation = { loss: e.loss, accuracy: e.accuracy };
    this.c.emitEvent({ type: 'evaluation', epoch, step: v, ...e });
  }

  private async save(): Promise<void> {
    const saved = await this.c.checkpoints.save();
    if (!saved) return;
    this.savedAt = saved.version;
    this.c.emitEvent({ type: 'checkpoint', step: saved.version, path: saved.path });
  }

  private async onNonFinite(t: AsyncTower, a: Applied, c: Computed): Promise<void> {
    const tensor = await t.firstNonFinite().catch(() => undefined);
    const what = `${tensor ? `gradient of '${tensor}'` : 'gradient'}${Number.isFinite(c.loss) ? '' : ` (loss ${c.loss})`}`;
    const reason = `non-finite value at step ${a.version}: tower on ${t.device}: ${what}; the server ${a.skipped ? 'skipped' : 'applied'} its push`;
    if (this.c.o.guard.nonFinite === 'halt') throw new NonFiniteError(reason, a.version);
    this.c.emitEvent({ type: 'skipped', step: a.version, reason });
  }

  private report(rank: number, t: AsyncTower, batch: NumberedBatch, c: Computed, a: Applied, at: { waitFrom: number; start: number; pushFrom: number }): void {
    const end = performance.now();
    const B = batch.indices.length;
    this.rates[rank] = B / Math.max(1e-6, (end - at.start) / 1000);
    this.loss = c.loss + c.regLoss;
    const towerExamplesPerSec = this.rates.map((x, r) => (this.gate.isAlive(r) ? x : 0));
    const event: StepEvent = {
      step: a.version,
      epoch: batch.epoch,
      loss: this.loss,
      learningRate: a.lr,
      gradientNorm: Math.sqrt(a.normSq),
      examplesPerSec: towerExamplesPerSec.reduce((x, y) => x + y, 0),
      secPerBatch: (end - at.start) / 1000,
      batchSize: B,
      shardSizes: [B],
      towers: [{ device: t.device, ...c.timings, reduce: end - at.pushFrom, update: a.endMs - a.startMs, idle: at.start - at.waitFrom }],
      async: { version: a.version, tower: rank, device: t.device, staleness: Math.max(a.staleness, c.otherStaleness ?? 0), lag: a.lag, pulledVersion: c.pulled.version, towerExamplesPerSec },
    };
    this.c.emitStep({ event, startMs: at.waitFrom, endMs: end, async: { tower: rank, wait: [at.waitFrom, at.start], pull: c.pullMs, push: [at.pushFrom, end], apply: [a.startMs, a.endMs] } });
  }

  /** Drops tower `rank` (dead, failed or late): an event names it; the run fails when too few remain. */
  private drop(rank: number, reason: string): void {
    if (!this.gate.isAlive(rank) || this.failure || this.ended) return;
    this.gate.drop(rank);
    this.rounds?.check();
    this.c.server.drop(rank);
    const t = this.c.towers[rank]!;
    const remaining = this.gate.live;
    this.c.emitEvent({ type: 'towerDropped', step: this.submitted, tower: rank, device: t.device, reason, remaining });
    void t.release(reason);
    if (remaining < this.c.s.minTowers)
      this.fail(new TowerError(t.device, 'train', `${reason}; ${remaining} of ${this.c.towers.length} towers remain, fewer than minTowers (${this.c.s.minTowers})`));
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.dispenser.end();
    this.gate.close();
    this.rounds?.close();
    this.changed.splice(0).forEach((f) => f());
  }
}
