// Mode 'async' as a kind of run (src/coordinator/run.ts): prepares the towers, the parameter server and the data,
// restores a checkpoint, then runs the asynchronous loop. Towers in other processes: src/async/remote.ts.
import { loadInput, type LoadedInput } from '../data/inputs.js';
import { RunPlan } from '../coordinator/plan.js';
import type { LoopContext } from '../coordinator/train-loop.js';
import type { RunKind } from '../coordinator/run.js';
import { TEST_SET } from '../coordinator/evaluation.js';
import { runSettingsOf, type ResolvedTrainOptions } from '../options.js';
import type { RunSummary } from '../events.js';
import { tensorBoardObserver } from '../observers/tensorboard.js';
import type { RunObserver, RunStreams } from '../observers/observer.js';
import { BatchIndex } from './batches.js';
import { AsyncCheckpoints } from './checkpoint.js';
import { AsyncLoop, type AsyncLoopContext } from './loop.js';
import { asyncTraceObserver, stalenessObserver } from './observers.js';
import { ServerTower, type ServerOptions } from './server.js';
import { asyncSettings } from './settings.js';
import { LocalAsyncTower, type AsyncTower } from './tower.js';

export const TRAIN_SET = 'train';

/** The training options of the towers and the server (the same optimizer, clipping and EMA as a synchronous run). */
export function trainingOf(o: ResolvedTrainOptions) {
  return { optimizer: o.optimizer, ...(o.clipNorm !== undefined ? { clipNorm: o.clipNorm } : {}), ...(o.emaDecay !== undefined ? { emaDecay: o.emaDecay } : {}) };
}

/** The run's length and data order (the synchronous mode's: batch n of the seeded order is step n + 1). */
export function planOf(o: ResolvedTrainOptions, count: number): { plan: RunPlan; order: BatchIndex } {
  const plan = new RunPlan({ count, ...o.data, seed: o.seed, ...(o.epochs !== undefined ? { epochs: o.epochs } : {}), ...(o.steps !== undefined ? { steps: o.steps } : {}) });
  const order = new BatchIndex({ count, batchSize: o.data.batchSize, lastBatch: o.data.lastBatch, shuffle: o.data.shuffle, seed: o.seed });
  return { plan, order };
}

/** The server of this process: built, seeded like tower 0 of a synchronous run, restored from a checkpoint if asked
 *  (or, `startAt`, as the lead server says). */
export async function openServer(
  c: LoopContext,
  input: LoadedInput,
  towers: { count: number; labels: string[]; deviceIndex: number },
  plan: RunPlan,
  shard?: ServerOptions['shard'],
  startAt?: (server: ServerTower) => Promise<number>,
): Promise<{ server: ServerTower; checkpoints: AsyncCheckpoints; start: number; resumed: boolean }> {
  const { o } = c;
  const s = asyncSettings(o, towers.count);
  const server = ServerTower.open(towers.deviceIndex, {
    spec: o.model,
    training: trainingOf(o),
    maxBatch: input.test ? input.evalBatch : 1,
    towers: towers.count,
    totalSteps: plan.totalSteps,
    stalenessLr: s.stalenessLr,
    ...(shard ? { shard } : {}),
  });
  try {
    server.tower.initWeights(o.seed);
    if (input.test) server.uploadDataset(TEST_SET, input.test, input.testTransform);
    const checkpoints = new AsyncCheckpoints(server, o.checkpoint, runSettingsOf(o), plan.perEpoch, towers.labels);
    let start = 0;
    // A server of one shard of several starts where the lead says (Note [Shard checkpoints]).
    const path = o.checkpoint?.resume && !startAt ? await checkpoints.latest() : undefined;
    if (startAt) start = await startAt(server);
    if (path) {
      start = await checkpoints.restore(path);
      c.emitEvent({ type: 'resumed', step: start, path, bitIdentical: false, note: 'the server state is restored bit for bit; an async run is not bit-reproducible (Note [Async resume])' });
    }
    server.start(start);
    return { server, checkpoints, start, resumed: path !== undefined };
  } catch (e) {
    await server.close();
    throw e;
  }
}

/** The asynchronous loop of a run: its towers (here or in worker processes) against `server`, from version `start`. */
export function asyncLoop(
  c: LoopContext,
  r: { towers: AsyncTower[]; server: ServerTower; plan: RunPlan; order: BatchIndex; start: number; checkpoints: AsyncCheckpoints; evaluate: boolean },
  extra: Pick<AsyncLoopContext, 'faults' | 'between'>,
): AsyncLoop {
  const { o } = c;
  return new AsyncLoop({
    o,
    s: asyncSettings(o, r.towers.length),
    towers: r.towers,
    server: r.server,
    batches: r.order,
    totalSteps: r.plan.totalSteps,
    epochs: r.plan.epochs,
    start: r.start,
    checkpoints: r.checkpoints,
    evaluate: r.evaluate,
    deadlineMs: o.guard.stepTimeoutMs ?? c.callMs,
    stopped: c.stopped,
    emitStep: c.emitStep,
    emitEvent: c.emitEvent,
    ...extra,
  });
}

/** An asynchronous run on the towers of this process. */
class LocalAsyncRun {
  private loop: AsyncLoop | undefined;
  server: ServerTower | undefined;

  constructor(private readonly c: LoopContext) {}

  get state(): { step: number } {
    return { step: this.loop?.step ?? 0 };
  }

  async run(): Promise<RunSummary> {
    const { towers, o } = this.c;
    const input = await loadInput(o.data, { withTest: o.evaluate, inputShape: o.model.input.shape });
    await towers.build({ spec: o.model, maxBatch: o.data.batchSize, training: trainingOf(o) }, o.seed);
    await towers.upload(TRAIN_SET, input.train, input.trainTransform);
    const { plan, order } = planOf(o, input.train.count);
    const { server, checkpoints, start } = await openServer(this.c, input, { count: towers.size, labels: towers.devices, deviceIndex: towers.size }, plan);
    this.server = server;
    try {
      this.c.emitEvent({ type: 'started', step: start, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: towers.devices });
      const crop = input.stepParams && ((b: { number: number; indices: Int32Array }) => input.stepParams!(o.seed, b.number, b.indices));
      const asyncTowers: AsyncTower[] = towers.ports.map((p, r) => new LocalAsyncTower(p, r, server, TRAIN_SET, crop));
      this.loop = asyncLoop(this.c, { towers: asyncTowers, server, plan, order, start, checkpoints, evaluate: input.test !== undefined }, {
        faults: this.c.faults,
        between: { pending: () => towers.queued > 0, run: () => towers.drain() },
      });
      return await this.loop.run();
    } finally {
      this.server = undefined;
      await server.close();
    }
  }
}

/** TensorBoard (weight histograms from the server's master weights), the staleness histograms, the async timeline. */
async function asyncObservers(o: ResolvedTrainOptions, streams: RunStreams, server: () => ServerTower | undefined, devices: string[]): Promise<RunObserver[]> {
  const out: RunObserver[] = [];
  if (o.logDir) {
    const every = o.histogramsEvery;
    const read = async () => [...(server()?.tower.readWeights('w') ?? [])];
    out.push(await tensorBoardObserver(o.logDir, streams, every ? { every, read, betweenSteps: (f) => f() } : undefined));
    out.push(await stalenessObserver(o.logDir, streams, every ?? 100));
  }
  if (o.traceFile) out.push(asyncTraceObserver(o.traceFile, devices, streams));
  return out;
}

/** Mode 'async' on the towers of this process. */
export function localAsyncRun(): RunKind {
  let current: LocalAsyncRun | undefined;
  return {
    loop: (c) => (current = new LocalAsyncRun(c)),
    observers: (o, streams, towers) => asyncObservers(o, streams, () => current?.server, towers.devices),
  };
}
