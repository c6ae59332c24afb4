// A training run: its streams, its observers (TensorBoard, trace), and how it ends. Note [Run streams] in
// src/events.ts: the error is delivered once, through `done` (and a 'failed' event); the streams then complete.
import { ReplaySubject, Subject, asapScheduler, observeOn, share } from 'rxjs';
import type { ResolvedTrainOptions } from '../options.js';
import type { RunEvent, StepEvent, TrainRun, RunSummary } from '../events.js';
import type { RunObserver, RunStreams, StepRecord } from '../observers/observer.js';
import { tensorBoardObserver } from '../observers/tensorboard.js';
import { traceObserver } from '../observers/trace.js';
import { TrainLoop, type LoopContext } from './train-loop.js';
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

export function startRun(towers: TowerSet, o: ResolvedTrainOptions, rt: { callMs: number; shares: 'equal' | 'speed'; faults: FaultPlan | undefined }, kind: RunKind = syncRun): TrainRun {
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
    stopped: () => stopRequested,
    emitStep: (r) => {
      steps.next(r.event);
      records.next(r);
    },
    emitEvent: (e) => events.next(e),
  });
  // While the run steps, state reads wait for the gap between two steps, and the towers keep the process alive.
  towers.running = true;
  towers.hold(true);
  const run = async (): Promise<RunSummary> => {
    const observers = await kind.observers(o, { records$: records, events$: events }, towers);
    try {
      return await loop.run();
    } finally {
      records.complete();
      await Promise.allSettled(observers.map((x) => x.close()));
      towers.running = false;
      towers.hold(false);
      await towers.drain();
    }
  };
  const done = run().then(
    (summary) => {
      steps.complete();
      events.complete();
      return summary;
    },
    (e: unknown) => {
      const error = e instanceof Error ? e : new Error(String(e));
      events.next({ type: 'failed', step: loop.state.step, error });
      steps.complete();
      events.complete();
      throw error;
    },
  );
  done.catch(() => undefined); // an app that never awaits `done` must not die of an unhandled rejection
  return {
    steps$: steps.pipe(observeOn(asapScheduler), share()),
    events$: events.pipe(observeOn(asapScheduler), share()),
    done,
    stop: () => {
      stopRequested = true;
    },
  };
}
