// A training run: its streams, its observers (TensorBoard, trace), and how it ends. Note [Run streams] in
// src/events.ts: the error is delivered once, through `done` (and a 'failed' event); the streams then complete.
import { ReplaySubject, Subject, share } from 'rxjs';
import type { Layout, ResolvedTrainOptions } from '../options.js';
import { OutputError, RuntimeClosedError } from '../errors.js';
import { prepareOutputs } from './outputs.js';
import type { RunEvent, StepEvent, TrainRun, RunSummary } from '../events.js';
import type { RunObserver, RunStreams, StepRecord } from '../observers/observer.js';
import { tensorBoardObserver } from '../observers/tensorboard.js';
import { traceObserver } from '../observers/trace.js';
import { TrainLoop, type LoopContext } from './train-loop.js';
import { RunDelivery } from './run-delivery.js';
import type { FaultPlan } from './step.js';
import type { TowerSet } from './towers.js';

/** How a run trains (synchronous steps here; the parameter server's loop in src/async/run.ts) and what observes it. */
export interface RunKind {
  loop(c: LoopContext): { run(): Promise<RunSummary>; readonly state: { step: number } };
  observers(o: ResolvedTrainOptions, streams: RunStreams, towers: TowerSet): Promise<RunObserver[]>;
}

const syncRun: RunKind = { loop: (c) => new TrainLoop(c), observers: openObservers };

async function openObservers(o: ResolvedTrainOptions, streams: RunStreams, towers: TowerSet): Promise<RunObserver[]> {
  const out: RunObserver[] = [];
  if (o.logDir) {
    const every = o.histogramsEvery;
    const histograms = every ? { every, read: () => towers.ports[0]!.readWeights('w'), betweenSteps: (f: () => Promise<void>) => towers.betweenSteps(f) } : undefined;
    out.push(await tensorBoardObserver(o.logDir, streams, histograms));
  }
  if (o.traceFile) out.push(traceObserver(o.traceFile, towers.devices, streams));
  return out;
}

/** What a run's failure is, told plainly: a closed runtime says so (not the dead buffer or worker it caused). */
function failure(e: unknown, towers: TowerSet, step: number, lastCheckpoint: string | undefined): Error {
  const error = e instanceof Error ? e : new Error(String(e));
  if (!towers.closed || error instanceof RuntimeClosedError) return error;
  const kept = lastCheckpoint ? `; the last checkpoint is ${lastCheckpoint}` : '';
  return new RuntimeClosedError(`the runtime was closed (rt.close()) while training, after step ${step}${kept}`, { cause: error });
}

export function startRun(
  towers: TowerSet,
  o: ResolvedTrainOptions,
  rt: { callMs: number; shares: 'equal' | 'speed'; faults: FaultPlan | undefined; layout: () => Layout },
  kind: RunKind = syncRun,
): TrainRun {
  const steps = new ReplaySubject<StepEvent>(1);
  const records = new Subject<StepRecord>();
  const events = new Subject<RunEvent>();
  let stopRequested = false;
  const loop = kind.loop({
    towers,
    o,
    callMs: rt.callMs,
    shares: rt.shares,
    faults: rt.faults,
    layout: rt.layout,
    stopped: () => stopRequested || towers.closed,
    emitStep: (r) => {
      steps.next(r.event);
      records.next(r);
    },
    emitEvent: (e) => events.next(e),
  });
  // While the run steps, state reads wait for the gap between two steps, and the towers keep the process alive.
  towers.running = true;
  towers.hold(true);
  let lastCheckpoint: string | undefined;
  events.subscribe((e) => {
    if (e.type === 'checkpoint' || e.type === 'resumed') lastCheckpoint = e.path;
  });
  const run = async (): Promise<RunSummary> => {
    let observers: RunObserver[] = [];
    try {
      await prepareOutputs(o); // every output path written once before step 1
      observers = await kind.observers(o, { records$: records, events$: events }, towers);
      const summary = await loop.run();
      if (towers.closed) throw new Error('closed while training'); // stopped by close(): not a success (failure() says so)
      records.complete();
      const closing = await Promise.allSettled(observers.map((x) => x.close()));
      observers = [];
      const lost = closing.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as Error).message);
      if (lost.length > 0)
        throw new OutputError(`the run trained ${summary.steps} steps${lastCheckpoint ? ` (last checkpoint ${lastCheckpoint})` : ''}, but lost an output: ${lost.join('; ')}`);
      return summary;
    } finally {
      records.complete();
      await Promise.allSettled(observers.map((x) => x.close()));
      towers.running = false;
      towers.hold(false);
      await towers.drain().catch(() => undefined);
    }
  };
  const done = run().then(
    (summary) => {
      steps.complete();
      events.complete();
      return summary;
    },
    (e: unknown) => {
      const error = failure(e, towers, loop.state.step, lastCheckpoint);
      events.next({ type: 'failed', step: loop.state.step, error });
      steps.complete();
      events.complete();
      throw error;
    },
  );
  done.catch(() => undefined); // an app that never awaits `done` must not die of an unhandled rejection
  const delivery = new RunDelivery();
  return {
    steps$: steps.pipe(delivery.deliver(), share()), // asynchronously, in order across both (Note [Run stream delivery])
    events$: events.pipe(delivery.deliver(), share()),
    done,
    stop: () => {
      stopRequested = true;
    },
  };
}
