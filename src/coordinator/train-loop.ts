// The training loop as a short pipeline: plan -> shard -> launch -> land (step -> emit), with the policies
// (non-finite, replicas), checkpoints and evaluation each in their own module; step t+1 is launched while step t
// runs (Note [Pipelined steps] in pipeline.ts). Note [Synchronous update] is in towers.ts.
import { DEFAULT_BUCKET_BYTES } from '../scheduler/buckets.js';
import { loadInput } from '../data/inputs.js';
import type { BatchPlan } from '../data/batches.js';
import { learningRate, parseSchedule, type ResolvedSchedule } from '../model/schedule.js';
import { runSettingsOf, type Layout, type ResolvedTrainOptions } from '../options.js';
import type { RunEvent, RunSummary, StepEvent } from '../events.js';
import type { StepRecord } from '../observers/observer.js';
import type { StepReply, StepRequest } from '../tower-port/protocol.js';
import { cancelled, PIPELINE_DEPTH, unpipelined, type Flight, type Shards } from './pipeline.js';
import { Checkpoints, type TrainState } from './checkpoints.js';
import type { LoadedCheckpoint } from '../io/checkpoint.js';
import { checkBatch, checkMemory, towerBytes } from './bounds.js';
import { evaluateTest, TEST_SET } from './evaluation.js';
import { countRollback, describeNonFinite, nonFinite, nonFiniteAction, type Rollbacks } from './non-finite.js';
import { RunPlan } from './plan.js';
import { replicaCheckDue, replicaPolicy } from './replicas.js';
import { shardSizes, splitIndices } from './shard.js';
import { SpeedShares } from './speed.js';
import { faultsFor, fulfilled, launchAll, settleAll, type FaultPlan } from './step.js';
import { runAgreement } from '../group/agreement.js';
import type { TowerSet } from './towers.js';

export const TRAIN_SET = 'train';

export interface LoopContext {
  towers: TowerSet;
  o: ResolvedTrainOptions;
  /** Deadline of one control call (ms), and of a step when no guard.stepTimeoutMs is set. */
  callMs: number;
  shares: 'equal' | 'speed';
  faults: FaultPlan | undefined;
  /** The run's layout now (recorded with checkpoints; Note [Run settings]). */
  layout(): Layout;
  stopped(): boolean;
  emitStep(r: StepRecord): void;
  emitEvent(e: RunEvent): void;
}

export class TrainLoop {
  private plan!: RunPlan;
  private readonly ckpt: Checkpoints;
  private schedule!: ResolvedSchedule;
  private stepParams: ((seed: number, step: number, indices: Int32Array) => Int32Array) | undefined;
  private speed: SpeedShares | undefined;
  private evaluateOn = false;
  /** Steps done, the next batch's position, the learning-rate scale: what a checkpoint saves. */
  readonly state: TrainState = { step: 0, next: { epoch: 0, batch: 0 }, lrScale: 1 };
  private loss = NaN;
  private evaluation: RunSummary['evaluation'];
  private rolledBack = false;
  /** Rollbacks in a row to one checkpoint (guard.maxRollbacks). */
  private rollbacks: Rollbacks = { path: '', count: 0 };
  /** Equal shares depend only on the batch length: the last split, reused while the length stays the same. */
  private equalSplit: { length: number; allSizes: number[]; sizes: number[] } | undefined;
  /** Whether step t+1 may be launched while step t runs (Note [Pipelined steps]). */
  private pipelined = false;
  /** When the last step landed: a step's wall time starts no earlier (a pipelined step was launched during it). */
  private lastEndMs = 0;

  constructor(private readonly c: LoopContext) {
    const settings = { ...runSettingsOf(c.o), world: c.towers.world.shape };
    this.ckpt = new Checkpoints(c.towers, c.o.checkpoint, settings, c.layout, (message) => c.emitEvent({ type: 'warning', step: this.state.step, message }));
  }

  async run(): Promise<RunSummary> {
    try {
      return await this.steps();
    } catch (e) {
      this.c.towers.world.fail(`its run failed after step ${this.state.step}: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    }
  }

  private async steps(): Promise<RunSummary> {
    const world = this.c.towers.world;
    const resumeFrom = await this.ckpt.plan(); // before anything is built (Note [Checkpoint ownership])
    await this.prepare();
    if (resumeFrom) await this.resume(resumeFrom);
    const off = unpipelined(this.c.o.pipeline, this.c.shares, world.processes);
    this.pipelined = off === undefined;
    const pipeline = off === undefined ? { depth: PIPELINE_DEPTH } : { depth: 0, off };
    this.c.emitEvent({ type: 'started', step: this.state.step, totalSteps: this.plan.totalSteps, stepsPerEpoch: this.plan.perEpoch, devices: this.c.towers.devices, ...(this.c.towers.layout ? { layout: this.c.towers.layout } : {}), ...this.c.towers.shardReport(), pipeline });
    do {
      this.rolledBack = false;
      await this.pass();
    } while (this.rolledBack);
    await this.save();
    await world.agree('the end of the run', { step: this.state.step }); // no rank reports success for work another lost
    return { steps: this.state.step, epochs: this.plan.epochs, finalLoss: this.loss, ...(this.evaluation ? { evaluation: this.evaluation } : {}) };
  }

  /** One pass over the batches from state.next, until the end, a stop or a rollback (Note [Pipelined steps]). */
  private async pass(): Promise<void> {
    const world = this.c.towers.world;
    const flights: Flight[] = []; // launched, not yet landed, oldest first
    try {
      for (const batch of this.plan.batches(this.state.next)) {
        const last = flights[flights.length - 1];
        if (last && !this.mayRunAhead(last)) while (flights.length > 0) if ((await this.landOldest(flights)) !== 'ok') return;
        const done = this.state.step + flights.length; // steps done once every flight lands (skipped ones count)
        if (this.plan.reached(done) || world.stopping(this.c.stopped())) break;
        flights.push(this.launch(batch, done + 1, flights.length > 0));
        if (flights.length > PIPELINE_DEPTH && (await this.landOldest(flights)) !== 'ok') return;
      }
      while (flights.length > 0) if ((await this.landOldest(flights)) !== 'ok') return;
    } catch (e) {
      if (flights.length > 0) this.c.towers.abortGroup(); // frees towers blocked in the all-reduce of a step behind the failed one
      throw e;
    }
  }

  /**
   * Lands the oldest flight with the others in flight behind it (a failure must not leave them waiting in an
   * all-reduce). After a guard trip every step behind was cancelled on every device: they are launched again,
   * the same requests and faults, the first unchained ('stopped': the run was stopped instead).
   */
  private async landOldest(flights: Flight[]): Promise<'ok' | 'rolledBack' | 'stopped'> {
    const landed = await this.land(flights.shift()!, flights);
    if (landed !== 'redo') return landed;
    if (this.c.towers.world.stopping(this.c.stopped())) {
      flights.length = 0; // cancelled on every device: nothing runs
      return 'stopped';
    }
    flights.forEach((b, i) => (flights[i] = { ...b, settled: launchAll(this.c.towers, b.shards.requests, this.deadlineMs(), b.faults, i > 0) }));
    return 'ok';
  }

  private deadlineMs(): number {
    return this.c.o.guard.stepTimeoutMs ?? this.c.callMs;
  }

  /** Launches step `step` (1-based) of `batch` on every tower; `chained` behind a step not yet landed. */
  private launch(batch: BatchPlan, step: number, chained: boolean): Flight {
    const shards = this.shard(batch, step - 1);
    const faults = faultsFor(this.c.faults, step, this.c.towers.size);
    return { step, batch, shards, faults, settled: launchAll(this.c.towers, shards.requests, this.deadlineMs(), faults, chained) };
  }

  /** Whether the step after `a` may be launched before `a` lands: nothing must run between them. */
  private mayRunAhead(a: Flight): boolean {
    return this.pipelined && !this.c.towers.schedulePending && !this.hasDuties(a.batch, a.step);
  }

  /**
   * Consumes a launched step: its replies (or its failure's root cause), the non-finite policy, the step event,
   * and, with no step behind it, the work between steps. 'redo': the steps behind were cancelled by their devices
   * after this one's guard tripped, and must be launched again (policy 'skip').
   */
  private async land(f: Flight, behind: Flight[]): Promise<'ok' | 'redo' | 'rolledBack'> {
    const settled = await f.settled;
    const replies = fulfilled(settled) ?? (await settleAll(this.c.towers, f.step, settled, this.deadlineMs()));
    for (const r of replies) if (r.cancelled) throw new Error(`step ${f.step} was cancelled on some towers and not others (internal error; Note [Pipelined steps])`);
    this.state.next = this.plan.after(f.batch);
    this.speed?.record(f.shards.sizes, replies);
    if (nonFinite(replies)) {
      // Every step behind settles first: cancelled on every device (a trip), or run (a non-finite loss alone).
      const drained = await Promise.all(behind.map((b) => b.settled));
      if (await this.onNonFinite(replies)) return 'rolledBack';
      return drained.length > 0 && cancelled(drained[0]!) ? 'redo' : 'ok';
    }
    let lossSum = 0;
    for (const r of replies) lossSum += r.loss;
    const total = await this.c.towers.world.afterStep(this.state.step + 1, lossSum, this.c.stopped());
    this.emit(f.batch, f.shards, replies, total.loss);
    if (behind.length === 0 && this.hasDuties(f.batch)) await this.afterStep(f.batch);
    else if (this.c.towers.world.towers === 1 && replicaCheckDue(this.state.step, this.c.o.guard.replicaCheckEvery)) await this.checkReplicas(); // reads nothing
    return 'ok';
  }

  /** Loads the data, builds the towers and uploads the data sets: all bad input fails here, before step 1. */
  private async prepare(): Promise<void> {
    const { towers, o } = this.c;
    const n = towers.world.towers; // every tower of every process shares the global batch
    const B = o.data.batchSize;
    shardSizes(B, n); // rejects batches smaller than the tower count before any work
    // 'speed' shares may give one tower almost the whole batch; equal shares never exceed ceil(B/n).
    const maxShard = this.c.shares === 'speed' ? B - (n - 1) : Math.ceil(B / n);
    this.evaluateOn = o.evaluate;
    const input = await loadInput(o.data, { withTest: o.evaluate, inputShape: o.model.input.shape });
    checkBatch(o.data, input.train.count, n);
    const training = { optimizer: o.optimizer, ...(o.clipNorm !== undefined ? { clipNorm: o.clipNorm } : {}), ...(o.emaDecay !== undefined ? { emaDecay: o.emaDecay } : {}) };
    const build = { spec: o.model, maxBatch: Math.max(maxShard, input.test ? input.evalBatch : 1), training };
    checkMemory(towerBytes(build, input.test ? [input.train, input.test] : [input.train]), towers.devices, build.maxBatch);
    await towers.build(build, o.seed, o.overlap ? { bucketBytes: o.bucketBytes ?? DEFAULT_BUCKET_BYTES } : undefined, o.shardUpdate ?? false);
    await towers.upload(TRAIN_SET, input.train, input.trainTransform);
    if (input.test) await towers.upload(TEST_SET, input.test, input.testTransform);
    this.stepParams = input.stepParams;
    this.plan = new RunPlan({ count: input.train.count, ...o.data, seed: o.seed, ...(o.epochs !== undefined ? { epochs: o.epochs } : {}), ...(o.steps !== undefined ? { steps: o.steps } : {}) });
    this.schedule = parseSchedule(o.optimizer.lr);
    this.speed = this.c.shares === 'speed' ? new SpeedShares(n) : undefined;
    await towers.world.agree('the run settings', runAgreement(o, towers.schedule(), input.train.count, this.plan.totalSteps));
  }

  private async resume(ck: LoadedCheckpoint): Promise<void> {
    const { bitIdentical, note, ...state } = await this.ckpt.restore(ck, { resuming: true });
    Object.assign(this.state, state);
    this.c.emitEvent({ type: 'resumed', step: this.state.step, path: ck.path, bitIdentical, note });
  }

  /** Splits the batch over the towers (Note [Shard weighting]) into one step request per tower. */
  private shard(batch: BatchPlan, done: number): Shards {
    const startMs = performance.now();
    this.c.towers.applyPendingSchedule();
    const world = this.c.towers.world;
    const { allSizes, sizes } = this.split(batch.indices.length);
    const parts = world.mine(splitIndices(batch.indices, allSizes)); // this process's rows only
    const lr = learningRate(this.schedule, done) * this.state.lrScale;
    const gradScale = 1 / batch.indices.length;
    const t = done + 1;
    const stepParams = this.stepParams;
    const requests: StepRequest[] = [];
    for (const indices of parts) {
      const q: StepRequest = { dataset: TRAIN_SET, indices, lr, t, gradScale };
      if (stepParams) q.crop = stepParams(this.c.o.seed, done, indices);
      requests.push(q);
    }
    return { sizes, allSizes, requests, lr, startMs };
  }

  private split(length: number): { allSizes: number[]; sizes: number[] } {
    const world = this.c.towers.world;
    if (this.speed) {
      const allSizes = shardSizes(length, world.towers, this.speed.weights());
      return { allSizes, sizes: world.mine(allSizes) };
    }
    if (this.equalSplit?.length !== length) {
      const allSizes = shardSizes(length, world.towers);
      this.equalSplit = { length, allSizes, sizes: world.mine(allSizes) };
    }
    return this.equalSplit;
  }

  /** The non-finite policy; true when the run rolled back (the batch loop restarts from the checkpoint). */
  private async onNonFinite(replies: StepReply[]): Promise<boolean> {
    const { towers, o } = this.c;
    const ck = o.guard.nonFinite === 'rollback' ? await this.ckpt.latest() : undefined;
    const step = this.state.step + 1;
    const action = nonFiniteAction(o.guard.nonFinite, step, await describeNonFinite(towers, step, replies), ck !== undefined);
    if (action.kind === 'skip') {
      this.state.step++;
      this.c.emitEvent({ type: 'skipped', step: this.state.step, reason: action.reason });
      return false;
    }
    this.rollbacks = countRollback(this.rollbacks, ck!.path, o.guard.maxRollbacks, { reason: action.reason, step, lrScale: this.state.lrScale });
    const lrScale = this.state.lrScale * o.guard.rollbackLrFactor;
    const { bitIdentical: _same, note: _note, ...restored } = await this.ckpt.restore(ck!, { resuming: false });
    Object.assign(this.state, restored, { lrScale });
    this.c.emitEvent({ type: 'rolledBack', step: this.state.step, path: ck!.path, reason: action.reason, lrScale });
    this.rolledBack = true;
    return true;
  }

  /** The step event of a landed step; `loss`: the data loss summed over every tower of every process. */
  private emit(batch: BatchPlan, s: Shards, replies: StepReply[], loss: number): void {
    const endMs = performance.now();
    // A pipelined step was launched while its predecessor ran: its wall time starts when that one landed.
    const startMs = Math.max(s.startMs, this.lastEndMs);
    this.lastEndMs = endMs;
    const wall = (endMs - startMs) / 1000;
    this.loss = loss + replies[0]!.regLoss;
    this.state.step++;
    const devices = this.c.towers.devices; // a getter that maps the ports: once per step, not once per tower
    const event: StepEvent = {
      step: this.state.step,
      epoch: batch.epoch,
      loss: this.loss,
      learningRate: s.lr,
      gradientNorm: replies[0]!.gradNorm,
      examplesPerSec: batch.indices.length / wall,
      secPerBatch: wall,
      batchSize: batch.indices.length,
      shardSizes: s.allSizes.slice(), // a copy: the split is reused across steps (equalSplit)
      towers: replies.map((r, i) => ({ device: devices[i]!, ...r.timings, idle: r.reduceWaitMs })),
    };
    this.c.emitStep({ event, startMs, endMs });
  }

  /** Whether anything must run before the next step (most steps: nothing, so nothing is awaited). */
  private hasDuties(batch: BatchPlan, step = this.state.step): boolean {
    const { o } = this.c;
    return (
      this.c.towers.queued > 0 ||
      (replicaCheckDue(step, o.guard.replicaCheckEvery) && this.c.towers.world.towers > 1) || // one tower: nothing to compare or drain
      (o.histogramsEvery !== undefined && step % o.histogramsEvery === 0) || // read in the gap after exactly this step
      (o.checkpoint?.everySteps !== undefined && step % o.checkpoint.everySteps === 0) ||
      this.plan.endsEpoch(batch)
    );
  }

  /** Work between two steps: queued reads and histograms, the replica check, checkpoints, the end of an epoch. */
  private async afterStep(batch: BatchPlan): Promise<void> {
    const { towers, o } = this.c;
    const step = this.state.step;
    await towers.drain();
    await this.checkReplicas();
    if (o.checkpoint?.everySteps && step % o.checkpoint.everySteps === 0) await this.save();
    if (!this.plan.endsEpoch(batch)) return;
    this.c.emitEvent({ type: 'epoch', epoch: batch.epoch, steps: step });
    if (!this.evaluateOn) return;
    const e = await evaluateTest(towers, o.emaDecay !== undefined);
    this.evaluation = { loss: e.loss, accuracy: e.accuracy };
    this.c.emitEvent({ type: 'evaluation', epoch: batch.epoch, step, ...e });
  }

  /** The replica check and its policy after the step just landed, if due (Note [Pipelined steps]). */
  private async checkReplicas(): Promise<void> {
    const { towers, o } = this.c;
    const step = this.state.step;
    await replicaPolicy(towers, step, { every: o.guard.replicaCheckEvery, policy: o.guard.replicaPolicy }, (r) => this.c.emitEvent({ type: 'replicas', step, ...r }));
  }

  private async save(): Promise<void> {
    const path = await this.ckpt.save(this.state);
    if (path) this.c.emitEvent({ type: 'checkpoint', step: this.state.step, path });
  }
}
