// What observers of a run (TensorBoard, the trace) subscribe to: every step with its coordinator-side start and
// end, and the run events. The run closes its observers before `done` settles.
import type { Observable } from 'rxjs';
import type { RunEvent, StepEvent } from '../events.js';

export interface StepRecord {
  event: StepEvent;
  /** The step's start and end on the coordinator (performance.now() ms). */
  startMs: number;
  endMs: number;
  /** Mode 'async': where the update's time went, for the timeline (src/async/observers.ts). */
  async?: AsyncSpans;
}

/** One async update's spans (performance.now() ms): the tower's wait at the staleness gate, pull, push; the apply. */
export interface AsyncSpans {
  tower: number;
  wait: [number, number];
  pull: [number, number];
  push: [number, number];
  apply: [number, number];
}

export interface RunStreams {
  /** Synchronous: an observer's handler runs before the next step starts. */
  records$: Observable<StepRecord>;
  events$: Observable<RunEvent>;
}

export interface RunObserver {
  close(): Promise<void>;
}
