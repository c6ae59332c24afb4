// The runtime: device actors (one worker_thread per tower), the coordinator's training loop, and step streams.
import os from 'node:os';
import { Observable, ReplaySubject, Subject, asapScheduler, observeOn, share } from 'rxjs';
import { native } from './native/addon.js';
import { DeviceActor, TowerError } from './actors/device-actor.js';
import { parseDevices } from './actors/devices.js';
import { shardSizes, splitIndices } from './actors/split.js';
import type { BuildReply, StepReply, StepRequest } from './actors/protocol.js';
import { planReduction, type ReductionOptions } from './scheduler/select.js';
import { broadcastSchedule } from './scheduler/broadcast.js';
import type { Schedule } from './scheduler/schedule.js';
import { parseModelSpec, type ModelSpec } from './model/spec.js';
import { parseTrainingOptions, type OptimizerSpec } from './model/optimizer.js';
import { learningRate, parseSchedule } from './model/schedule.js';
import { phaseOf, stepTimings, type StepLaunch, type StepTimings } from './model/tower.js';
import type { LabeledSet } from './data/mnist.js';
import { loadInput, type DataInput } from './data/inputs.js';
import type { ImageTransform } from './model/tower.js';
import { batchPlans, batchesPerEpoch } from './data/batches.js';
import { ConfigError } from './util/validate.js';
import { checkRuntimeOptions, checkTrainOptions } from './options.js';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from './io/checkpoint.js';
import { EventWriter } from './io/tfevents.js';
import { TraceWriter } from './io/trace.js';
import { traceStep } from './actors/timeline.js';

export interface RuntimeOptions {
  /** 'cpu:3', 'cpu:0,cpu:1', 'cuda:all', 'cuda:0x4' ... */
  devices: string | string[];
  reduction?: ReductionOptions;
  /** Deadline of one control call to a tower, and of one collective wait (ms). */
  callTimeoutMs?: number;
  collectiveTimeoutMs?: number;
  /**
   * How a global batch is shared: 'equal' (default; bit-reproducible) or 'speed': in proportion to each tower's
   * measured examples/sec (heterogeneous devices). Both are exact: each shard is weighted by 1/global batch.
   */
  shares?: 'equal' | 'speed';
}

export { mnist, cifar10, blocks, type MnistInput, type CifarInput, type BlocksInput, type DataInput } from './data/inputs.js';

/** What to do when the guards fire (Note [Non-finite guard] in src/model/tower.ts). */
export interface GuardOptions {
  /**
   * A NaN or infinite loss or reduced gradient: 'halt' (default) errors naming step, tower and tensor; 'skip'
   * drops the update; 'rollback' restores the last checkpoint and goes on with the learning rate times
   * rollbackLrFactor (default 0.5).
   */
  nonFinite?: 'halt' | 'skip' | 'rollback';
  rollbackLrFactor?: number;
  /** Watchdog: a step that has not finished within this many ms errors naming the tower and its phase. */
  stepTimeoutMs?: number;
  /** Compare a 64-bit hash of every tower's weights every K steps (default 100; 0 = never). */
  replicaCheckEvery?: number;
  /** On a replica mismatch: 'halt' (default) or 'rebroadcast' tower 0's weights to all and go on. */
  replicaPolicy?: 'halt' | 'rebroadcast';
}

/** Test-only hooks (fault injection); never set in production code. */
export interface TestHooks {
  faultFor?(step: number, rank: number): Pick<StepRequest, 'inject' | 'fault'> | undefined;
  /** Before step `step`, flip one bit in what tower `rank` receives in the all-reduce. */
  bitFlipAt?(step: number): number | undefined;
}

export interface TrainOptions {
  model: ModelSpec;
  optimizer: OptimizerSpec;
  clipNorm?: number;
  emaDecay?: number;
  /** mnist({ batchSize }), cifar10({ batchSize, dir? | generated? }) or blocks({ batchSize }) (src/data/inputs.ts). */
  data: DataInput;
  epochs?: number;
  steps?: number;
  seed?: number;
  /** Evaluate on the test set after each epoch (tower 0, EMA weights when kept). */
  evaluate?: boolean;
  guard?: GuardOptions;
  /** Checkpoints: every N steps and at the end (also after stop()); resume continues the exact trajectory. */
  checkpoint?: { dir: string; everySteps?: number; keep?: number; resume?: boolean };
  /** TensorBoard event files (loss, learning rate, examples/sec, gradient norm, accuracy). */
  logDir?: string;
  /** Also write weight histograms to the event files every N steps (reads tower 0's weights: off the hot path). */
  histogramsEvery?: number;
  /** A Chrome trace-event timeline with one track per tower (open in Perfetto or chrome://tracing). */
  traceFile?: string;
  testHooks?: TestHooks;
}

export interface TowerTimings extends StepTimings {
  device: string;
  /** Time this tower waited for the others inside the all-reduce (the synchronisation point). */
  idle: number;
}

export interface StepEvent {
  step: number;
  epoch: number;
  loss: number;
  learningRate: number;
  gradientNorm?: number;
  examplesPerSec: number;
  secPerBatch: number;
  batchSize: number;
  shardSizes: number[];
  towers: TowerTimings[];
}

export type RunEvent =
  | { type: 'started'; step: number; totalSteps: number; stepsPerEpoch: number; devices: string[] }
  | { type: 'epoch'; epoch: number; steps: number }
  | { type: 'skipped'; step: number; reason: string }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'replicas'; step: number; consistent: boolean; detail: string }
  | { type: 'resumed'; step: number; path: string }
  | { type: 'rolledBack'; step: number; path: string; reason: string; lrScale: number }
  | { type: 'evaluation'; epoch: number; loss: number; accuracy: number; useEma: boolean };

export interface RunSummary {
  steps: number;
  epochs: number;
  finalLoss: number;
  evaluation?: { loss: number; accuracy: number };
}

export interface TrainRun {
  /** One event per step; several subscribers, late ones too; a slow subscriber never blocks training. */
  steps$: Observable<StepEvent>;
  events$: Observable<RunEvent>;
  done: Promise<RunSummary>;
  /** Stops after the current step. */
  stop(): void;
}

const DEFAULT_CALL_MS = 60_000;
const DEFAULT_COLLECTIVE_MS = 30_000;

export class Runtime {
  private reduction: ReductionOptions | undefined;
  private gradComm: number | undefined;
  private weightComm: number | undefined;
  private built: BuildReply[] = [];
  private training = false;
  private closed = false;
  private readonly uploaded = new Set<string>();

  private constructor(
    readonly actors: DeviceActor[],
    private readonly opts: RuntimeOptions,
  ) {
    this.reduction = opts.reduction;
  }

  static async create(opts: RuntimeOptions): Promise<Runtime> {
    checkRuntimeOptions(opts);
    const slots = parseDevices(opts.devices);
    planReduction(opts.reduction, { ranks: slots.length, length: 16 }); // validate the options early
    const cpuTowers = slots.filter((s) => s.kind === 'cpu').length;
    const gemmThreads = Math.max(1, Math.floor(os.availableParallelism() / Math.max(1, cpuTowers)));
    const actors = slots.map((s) => new DeviceActor(s.label, { kind: s.kind, index: s.index, gemmThreads }));
    return new Runtime(actors, opts);
  }

  get devices(): string[] {
    return this.actors.map((a) => a.label);
  }

  private get callMs(): number {
    return this.opts.callTimeoutMs ?? DEFAULT_CALL_MS;
  }

  private all<T>(f: (a: DeviceActor, rank: number) => Promise<T>): Promise<T[]> {
    return Promise.all(this.actors.map(f));
  }

  /** Changes the reduction strategy; takes effect at the next step. A bad strategy is rejected, nothing changes. */
  setReduction(reduction: ReductionOptions): void {
    const length = this.built[0]?.paramCount ?? 16;
    const schedule = planReduction(reduction, { ranks: this.actors.length, length }); // throws: nothing changes
    this.reduction = reduction;
    // During a run the towers may be inside an all-reduce right now: the new schedule is installed by the
    // coordinator between two steps (applyPendingReduction), never under a running collective.
    if (this.gradComm !== undefined) this.pendingSchedule = schedule;
  }

  private pendingSchedule: Schedule | undefined;

  private applyPendingReduction(): void {
    if (this.pendingSchedule && this.gradComm !== undefined) native().setCommSchedule(this.gradComm, this.pendingSchedule);
    this.pendingSchedule = undefined;
  }

  /** The schedule the next step will use (for inspection and docs). */
  currentSchedule(): Schedule {
    return planReduction(this.reduction, { ranks: this.actors.length, length: this.built[0]?.paramCount ?? 1 });
  }

  private async setup(o: TrainOptions, maxBatch: number): Promise<void> {
    const spec = parseModelSpec(o.model);
    const training = parseTrainingOptions({ optimizer: o.optimizer, clipNorm: o.clipNorm, emaDecay: o.emaDecay });
    this.releaseComms();
    this.built = await this.all((a) => a.call('build', this.callMs, { spec, maxBatch, training }));
    this.uploaded.clear();
    const n = this.actors.length;
    const length = this.built[0]!.paramCount;
    const collMs = this.opts.collectiveTimeoutMs ?? DEFAULT_COLLECTIVE_MS;
    this.gradComm = native().createComm(this.built.map((b) => b.gradArena), planReduction(this.reduction, { ranks: n, length }), collMs);
    this.weightComm = native().createComm(this.built.map((b) => b.weightArena), broadcastSchedule(n, length), collMs);
    await this.all((a, r) => a.call('setCollectives', this.callMs, this.gradComm!, this.weightComm!, r));
    // Note [Synchronous update]: tower 0 initialises and broadcasts its weights (copies only), so all replicas
    // start bit-identical. Each step every tower adds the same L2 term, clips with the same norm and applies the
    // same optimizer update to the same reduced gradient (every element reduced once and copied verbatim, see
    // Note [Schedules]), so the replicas stay bit-identical without ever exchanging weights; the replica check
    // (checkReplicas) verifies it.
    await this.actors[0]!.call('initWeights', this.callMs, o.seed ?? 0);
    await this.all((a) => a.call('broadcastWeights', this.callMs));
  }

  private async upload(key: string, set: LabeledSet, transform?: ImageTransform): Promise<void> {
    if (this.uploaded.has(key)) return;
    // One shared copy for all actors: no per-sample copies, no per-actor structured clones.
    const shImg = new Uint8Array(new SharedArrayBuffer(set.images.length));
    shImg.set(set.images);
    const shLab = new Uint8Array(new SharedArrayBuffer(set.labels.length));
    shLab.set(set.labels);
    await this.all((a) => a.call('uploadDataset', this.callMs, key, shImg, shLab, set.count, transform));
    this.uploaded.add(key);
  }

  /** Starts training; progress flows out of the returned streams. One run at a time per runtime. */
  train(o: TrainOptions): TrainRun {
    if (this.closed) throw new Error('runtime is closed');
    if (this.training) throw new Error('a training run is already in progress on this runtime; await its done first');
    checkTrainOptions(o);
    parseModelSpec(o.model);
    parseTrainingOptions({ optimizer: o.optimizer, clipNorm: o.clipNorm, emaDecay: o.emaDecay });
    const stepsSubject = new ReplaySubject<StepEvent>(1);
    const eventsSubject = new Subject<RunEvent>();
    let stopRequested = false;
    this.training = true;
    const done = this.runLoop(o, stepsSubject, eventsSubject, () => stopRequested).then(
      (summary) => {
        this.training = false;
        stepsSubject.complete();
        eventsSubject.complete();
        return summary;
      },
      (err: unknown) => {
        this.training = false;
        stepsSubject.error(err);
        eventsSubject.error(err);
        throw err;
      },
    );
    done.catch(() => undefined); // the error also flows through the streams; don't crash on unhandled rejection
    return {
      steps$: stepsSubject.pipe(observeOn(asapScheduler), share()),
      events$: eventsSubject.pipe(observeOn(asapScheduler), share()),
      done,
      stop: () => {
        stopRequested = true;
      },
    };
  }

  private async runLoop(o: TrainOptions, steps$: Subject<StepEvent>, events$: Subject<RunEvent>, stopped: () => boolean): Promise<RunSummary> {
    const batchSize = o.data.batchSize;
    const lastBatch = o.data.lastBatch ?? 'drop';
    const shuffle = o.data.shuffle ?? true;
    if (o.epochs === undefined && o.steps === undefined) throw new ConfigError('train: give epochs or steps', 'epochs');
    shardSizes(batchSize, this.actors.length); // rejects batches smaller than the tower count before any work
    // 'speed' shares may give one tower almost the whole batch; equal shares never exceed ceil(B/n).
    const maxShard = this.opts.shares === 'speed' ? batchSize - (this.actors.length - 1) : Math.ceil(batchSize / this.actors.length);
    const input = await loadInput(o.data, { withTest: o.evaluate ?? false, inputShape: parseModelSpec(o.model).input.shape });
    const trainSet = input.train, testSet = input.test;
    await this.setup(o, Math.max(maxShard, testSet ? input.evalBatch : 1));
    await this.upload('train', trainSet, input.trainTransform);
    if (testSet) await this.upload('test', testSet, input.testTransform);

    const spec = parseModelSpec(o.model);
    const optimizer = parseTrainingOptions({ optimizer: o.optimizer }).optimizer;
    const schedule = parseSchedule(optimizer.lr);
    const seed = o.seed ?? 0;
    const perEpoch = batchesPerEpoch(trainSet.count, batchSize, lastBatch);
    const epochs = o.epochs ?? Math.ceil((o.steps ?? 0) / perEpoch);
    // Note [Exact resume]: the trajectory is a function of (weights, optimizer slots, EMA, step, data position,
    // settings). The checkpoint holds all of them; the data order depends only on (seed, epoch), so the resumed
    // run replays the same batches from the saved position, and every tower gets the same state bit for bit.
    const runSettings = { model: spec, optimizer: o.optimizer, clipNorm: o.clipNorm ?? null, emaDecay: o.emaDecay ?? null, seed, batchSize, lastBatch, shuffle, data: o.data };
    let step = 0;
    let start = { epoch: 0, batch: 0 };
    let lrScale = 1; // lowered by each non-finite rollback, and saved with checkpoints
    const restore = async (path: string): Promise<void> => {
      const ck = await loadCheckpoint(path);
      const saved = ck.state.settings as typeof runSettings | undefined;
      if (JSON.stringify(saved) !== JSON.stringify(runSettings))
        throw new ConfigError(
          `checkpoint ${path} was written with other settings (model, optimizer, seed, batch size or data options), so resuming would not continue its trajectory.\n` +
            `  saved: ${JSON.stringify(saved)}\n  given: ${JSON.stringify(runSettings)}\nUse the same settings, or another checkpoint dir to start fresh.`,
          'checkpoint',
        );
      const tensors = [...ck.tensors].map(([name, t]) => [name, t.data] as [string, Float32Array]);
      await this.all((a) => a.call('writeState', this.callMs, tensors));
      step = ck.step;
      start = ck.state.next as { epoch: number; batch: number };
      lrScale = typeof ck.state.lrScale === 'number' ? ck.state.lrScale : 1;
    };
    if (o.checkpoint?.resume) {
      const path = await latestCheckpoint(o.checkpoint.dir);
      if (path) {
        await restore(path);
        events$.next({ type: 'resumed', step, path });
      }
    }
    const save = async (next: { epoch: number; batch: number }): Promise<void> => {
      if (!o.checkpoint) return;
      const tensors = await this.actors[0]!.call('readState', this.callMs);
      const path = await saveCheckpoint(o.checkpoint.dir, { step, tensors, state: { settings: runSettings, next, lrScale, towers: this.devices } }, { keep: o.checkpoint.keep ?? 3 });
      events$.next({ type: 'checkpoint', step, path });
    };
    events$.next({ type: 'started', step, totalSteps: o.steps ?? epochs * perEpoch, stepsPerEpoch: perEpoch, devices: this.devices });
    const tb = o.logDir ? await EventWriter.open(o.logDir) : undefined;
    const trace = o.traceFile ? new TraceWriter(o.traceFile) : undefined;
    const clock0 = native().nowMs();
    trace?.track(0, 'coordinator');
    this.actors.forEach((a, r) => trace?.track(r + 1, `tower ${r} (${a.label})`));

    let loss = NaN;
    let evaluation: RunSummary['evaluation'];
    let next = start;
    try {
      for (let rolledBack = true; rolledBack; ) {
        rolledBack = false;
        for (const plan of batchPlans({ count: trainSet.count, batchSize, seed, lastBatch, shuffle, epochs, startEpoch: start.epoch, startBatch: start.batch })) {
          if ((o.steps !== undefined && step >= o.steps) || stopped()) break;
          const t0 = performance.now();
          const c0 = native().nowMs();
          this.applyPendingReduction();
          const sizes = shardSizes(plan.indices.length, this.actors.length, this.opts.shares === 'speed' ? this.speedWeights() : undefined);
          const shards = splitIndices(plan.indices, sizes);
          const lr = learningRate(schedule, step) * lrScale;
          const gradScale = 1 / plan.indices.length;
          const flip = o.testHooks?.bitFlipAt?.(step + 1);
          if (flip !== undefined && this.gradComm !== undefined) native().injectBitFlip(this.gradComm, flip);
          const replies = await this.stepAll(step, (r) => ({
            dataset: 'train',
            indices: shards[r]!,
            ...(input.stepParams ? { crop: input.stepParams(seed, step, shards[r]!) } : {}),
            gradScale,
            lr,
            t: step + 1,
            ...(o.testHooks?.faultFor?.(step + 1, r) ?? {}),
          }), o.guard);
          next = plan.index + 1 === perEpoch ? { epoch: plan.epoch + 1, batch: 0 } : { epoch: plan.epoch, batch: plan.index + 1 };
          if (this.opts.shares === 'speed') this.recordSpeed(sizes, replies);
          const lossSum = replies.reduce((acc, r) => acc + r.loss, 0);
          if (replies[0]!.skipped || !Number.isFinite(lossSum)) {
            const reason = await this.describeNonFinite(step + 1, replies);
            const policy = o.guard?.nonFinite ?? 'halt';
            if (policy === 'halt') throw new NonFiniteError(reason);
            if (policy === 'rollback') {
              const path = o.checkpoint ? await latestCheckpoint(o.checkpoint.dir) : undefined;
              if (!path) throw new NonFiniteError(`${reason}; no checkpoint to roll back to (set checkpoint.dir and everySteps)`);
              await restore(path);
              lrScale *= o.guard?.rollbackLrFactor ?? 0.5;
              events$.next({ type: 'rolledBack', step, path, reason, lrScale });
              rolledBack = true;
              break;
            }
            step++;
            events$.next({ type: 'skipped', step, reason });
            continue;
          }
          const wall = (performance.now() - t0) / 1000;
          const c1 = native().nowMs();
          loss = lossSum + replies[0]!.regLoss;
          step++;
          const event: StepEvent = {
            step,
            epoch: plan.epoch,
            loss,
            learningRate: lr,
            gradientNorm: replies[0]!.gradNorm,
            examplesPerSec: plan.indices.length / wall,
            secPerBatch: wall,
            batchSize: plan.indices.length,
            shardSizes: sizes,
            towers: replies.map((r, i) => ({ device: this.actors[i]!.label, ...r.timings, idle: r.reduceWaitMs })),
          };
          steps$.next(event);
          if (tb) {
            tb.scalar('loss', loss, step);
            tb.scalar('learning_rate', lr, step);
            tb.scalar('examples_per_sec', event.examplesPerSec, step);
            tb.scalar('gradient_norm', event.gradientNorm ?? NaN, step);
            if (o.histogramsEvery && step % o.histogramsEvery === 0)
              for (const [name, w] of await this.actors[0]!.call('readWeights', this.callMs)) tb.histogram(`weights/${name}`, w, step);
          }
          if (trace) traceStep(trace, step, c0 - clock0, c1 - clock0, event.towers.map((t) => ({ ...t, startMs: t.startMs - clock0 })));
          const every = o.guard?.replicaCheckEvery ?? 100;
          if (every > 0 && step % every === 0) {
            const report = await this.checkReplicas();
            events$.next({ type: 'replicas', step, ...report });
            if (!report.consistent) {
              if ((o.guard?.replicaPolicy ?? 'halt') === 'halt') throw new ReplicaMismatchError(`replicas diverged by step ${step}: ${report.detail}`);
              await this.all((a) => a.call('broadcastWeights', this.callMs));
            }
          }
          if (o.checkpoint?.everySteps && step % o.checkpoint.everySteps === 0) await save(next);
          if (plan.index === perEpoch - 1) {
            events$.next({ type: 'epoch', epoch: plan.epoch, steps: step });
            if (testSet) {
              const useEma = o.emaDecay !== undefined;
              const r = await this.actors[0]!.call('evaluate', this.callMs, 'test', useEma);
              evaluation = { loss: r.lossSum / r.count, accuracy: r.correct / r.count };
              events$.next({ type: 'evaluation', epoch: plan.epoch, ...evaluation, useEma });
              tb?.scalar('accuracy', evaluation.accuracy, step);
            }
          }
        }
      }
      await save(next);
    } finally {
      await tb?.close();
      await trace?.close();
    }
    return { steps: step, epochs, finalLoss: loss, ...(evaluation ? { evaluation } : {}) };
  }

  /**
   * One step on every tower. The watchdog: if the step misses its deadline, ask each tower which phase it is
   * in (towers waiting in the all-reduce are the victims; the others are the culprits) and say so.
   */
  // Per tower: an exponential average of compute milliseconds per example (forward + backward), for 'speed' shares.
  private msPerExample: number[] = [];

  private speedWeights(): number[] | undefined {
    if (this.msPerExample.length !== this.actors.length || this.msPerExample.some((m) => !(m > 0))) return undefined;
    return this.msPerExample.map((m) => 1 / m);
  }

  private recordSpeed(sizes: number[], replies: StepReply[]): void {
    replies.forEach((r, i) => {
      const ms = (r.timings.forward + r.timings.backward) / sizes[i]!;
      if (!(ms > 0)) return;
      const prev = this.msPerExample[i];
      this.msPerExample[i] = prev === undefined ? ms : 0.9 * prev + 0.1 * ms;
    });
  }

  private async stepAll(step: number, req: (rank: number) => StepRequest, guard: GuardOptions | undefined): Promise<StepReply[]> {
    const deadline = guard?.stepTimeoutMs ?? this.callMs;
    const phaseOfRank: Array<() => Promise<string | undefined>> = [];
    try {
      return await this.all((a, r) => {
        const q = req(r);
        // Faults are injected by the actor itself; every other step takes the fast path.
        if (q.inject !== undefined || q.fault !== undefined || q.indices === undefined || q.dataset === undefined) {
          phaseOfRank[r] = () => a.call('phase', 1000);
          return a.call('step', deadline, q);
        }
        return this.fastStep(a, r, q, deadline, phaseOfRank);
      });
    } catch (e) {
      if (!(e instanceof TowerError) || !/deadline/.test(e.causeText)) throw e;
      const phases = await Promise.all(this.actors.map((a, r) => (phaseOfRank[r] ?? (() => a.call('phase', 1000)))().catch(() => 'unresponsive')));
      const stuck = phases.map((p, r) => ({ p, r })).filter((x) => x.p !== 'reduce');
      const culprits = stuck.length > 0 ? stuck : phases.map((p, r) => ({ p, r }));
      const what = culprits.map((c) => `tower on ${this.actors[c.r]!.label} is in phase '${c.p ?? 'idle'}'`).join('; ');
      if (this.gradComm !== undefined) native().releaseComm(this.gradComm); // frees the towers blocked in the all-reduce
      this.gradComm = undefined;
      throw new WatchdogError(`step ${step + 1} did not finish within ${deadline} ms: ${what}`, culprits.map((c) => this.actors[c.r]!.label), culprits[0]?.p ?? undefined);
    }
  }

  // Per tower: the step programs' launch handles by "dataset:batch" (cleared when the towers are rebuilt).
  private launches: Array<Map<string, StepLaunch>> = [];

  /**
   * The fast path of Note [One hand-off per step]: the actor compiled the step program (once per batch size)
   * and owns the device; the coordinator launches it on the tower's device thread directly, so a step costs one
   * hand-off to each device thread and back, not a trip through the worker's event loop. The deadline is the
   * same as for actor calls; a worker that dies closes its device, which aborts the all-reduce and settles every
   * queued step with an error naming that device (Note [Collective executor]).
   */
  private async fastStep(actor: DeviceActor, rank: number, q: StepRequest, deadline: number, phaseOfRank: Array<() => Promise<string | undefined>>): Promise<StepReply> {
    const key = `${q.dataset}:${q.indices!.length}`;
    const cache = (this.launches[rank] ??= new Map());
    let launch = cache.get(key);
    if (!launch) {
      launch = await actor.call('stepLaunch', this.callMs, q.dataset!, q.indices!.length);
      cache.set(key, launch);
    }
    const program = launch.program;
    phaseOfRank[rank] = async () => phaseOf(native().programStatus(program));
    const hyper = new Float32Array(8);
    hyper[0] = q.lr;
    hyper[1] = q.t;
    hyper[2] = q.gradScale;
    const writes: Array<[number, Float32Array | Int32Array]> = [[launch.indices, q.indices!], [launch.hyper, hyper]];
    if (launch.crop !== undefined && q.crop) writes.push([launch.crop, q.crop]);
    let timer: NodeJS.Timeout | undefined;
    const failed = (why: string) => new TowerError(actor.label, 'step', why);
    try {
      const launched = (async () => {
        if (!actor.alive) throw failed(actor.deathCause ?? 'worker is dead');
        return native().runWith(program, writes, launch.reads);
      })().catch((e: unknown) => {
        if (e instanceof TowerError) throw e;
        // A dead worker's device and programs are gone: say so rather than "no compiled program".
        throw failed(actor.alive ? (e instanceof Error ? e.message : String(e)) : `${actor.deathCause ?? 'worker is dead'} (${e instanceof Error ? e.message : String(e)})`);
      });
      const r = await Promise.race([
        launched,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(failed(`no answer within ${deadline} ms (deadline)`)), deadline);
        }),
      ]);
      return {
        loss: r.values[0]!,
        regLoss: r.values[1]!,
        gradNorm: Math.sqrt(r.values[2]!),
        timings: stepTimings(r.marks, r.startMs),
        reduceWaitMs: r.waitMs,
        skipped: r.guardTripped,
      };
    } finally {
      clearTimeout(timer);
    }
  }


  private async describeNonFinite(step: number, replies: StepReply[]): Promise<string> {
    const bad: string[] = [];
    for (let r = 0; r < replies.length; r++) {
      const tensor = await this.actors[r]!.call('firstNonFinite', this.callMs);
      const lossBad = !Number.isFinite(replies[r]!.loss);
      if (tensor !== undefined || lossBad)
        bad.push(`tower on ${this.actors[r]!.label}${tensor ? `: gradient of '${tensor}'` : ''}${lossBad ? ` (loss ${replies[r]!.loss})` : ''}`);
    }
    const where = bad.length > 0 ? bad.join('; ') : 'no tower had a non-finite local gradient: the all-reduce produced it (corrupted transfer?)';
    return `non-finite value at step ${step}: ${where}`;
  }

  /**
   * The replica consistency check (also on demand): every tower hashes its weights on its device; towers whose
   * hash differs from tower 0's are named with their first differing tensor.
   */
  async checkReplicas(): Promise<{ consistent: boolean; detail: string }> {
    const hashes = await this.all((a) => a.call('replicaHashes', this.callMs));
    const ref = hashes[0]!;
    const bad: string[] = [];
    hashes.forEach((h, r) => {
      if (r === 0 || h.total === ref.total) return;
      const tensor = h.tensors.find(([name, v], i) => ref.tensors[i]?.[0] === name && ref.tensors[i]?.[1] !== v)?.[0];
      bad.push(`tower on ${this.actors[r]!.label} differs from tower 0 (${this.actors[0]!.label}) in '${tensor ?? '?'}'`);
    });
    return bad.length === 0 ? { consistent: true, detail: `all ${hashes.length} towers hash to ${ref.total}` } : { consistent: false, detail: bad.join('; ') };
  }

  /** Each tower's weights (copies; for checks and checkpoints, never on the hot path). */
  async readWeights(): Promise<Array<Map<string, Float32Array>>> {
    return (await this.all((a) => a.call('readWeights', this.callMs))).map((e) => new Map(e));
  }

  async readGradients(): Promise<Array<Map<string, Float32Array>>> {
    return (await this.all((a) => a.call('readGradients', this.callMs))).map((e) => new Map(e));
  }

  /**
   * Where everything lives (TF's log_device_placement, seed 001's lesson): per tower, each parameter with its
   * device and its place in the weight arena, and the kernels of each layer. Valid after train() has built.
   */
  placement(): string[] {
    const lines: string[] = [];
    this.built.forEach((b, r) => {
      lines.push(`tower ${r} on ${b.device}: ${b.paramCount} parameters in one weight arena and one gradient arena on ${b.device}`);
      let offset = 0;
      for (const p of b.params) {
        const n = p.shape.reduce((a, x) => a * x, 1);
        lines.push(`  ${p.name.padEnd(20)} [${p.shape.join('x')}] f32 on ${b.device} (arena +${offset}); kernels ${p.shape.length === 4 ? 'conv2d_forward, conv2d_backward' : 'dense_forward, dense_backward'}, optimizer update on ${b.device}`);
        offset += n;
      }
      lines.push(`  all-reduce of the gradient arena: ${this.currentSchedule().name}, executed on ${b.device}'s own native thread`);
    });
    return lines;
  }

  /** Test hook: the actor of tower `rank`. */
  actor(rank: number): DeviceActor {
    return this.actors[rank]!;
  }

  private releaseComms(): void {
    this.pendingSchedule = undefined;
    this.launches = [];
    if (this.gradComm !== undefined) native().releaseComm(this.gradComm);
    if (this.weightComm !== undefined) native().releaseComm(this.weightComm);
    this.gradComm = this.weightComm = undefined;
  }

  /** Frees every device and ends every worker. Always returns, also after a tower died. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.releaseComms();
    await Promise.all(this.actors.map((a) => a.close()));
  }
}

export function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  return Runtime.create(opts);
}

export { TowerError };

/** The non-finite guard halted training: the message names the step, the tower(s) and the first tensor. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/** The replica check found towers whose weights differ (seed 000's silent corruption). */
export class ReplicaMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplicaMismatchError';
  }
}

/** The watchdog fired: `devices` are the towers that did not reach the all-reduce, `phase` where they were. */
export class WatchdogError extends Error {
  constructor(
    message: string,
    readonly devices: string[],
    readonly phase: string | undefined,
  ) {
    super(message);
    this.name = 'WatchdogError';
  }
}
