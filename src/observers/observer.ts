// What observers of a run (TensorBoard, the trace) subscribe to: every step with its coordinator-side start and
// end, and the run events. The run closes its observers before `done` settles.
import type { Observable } from 'rxjs';
import type { RunEvent, StepEvent } from '../events.js';

export interface StepRecord {
  event: StepEvent;
  /** The step's start and end on the coordinator (performance.now() ms). */
  startMs: number;
  endMs: number;
}

export interface RunStreams {
  /** Synchronous: an observer's handler runs before the next step starts. */
  records$: Observable<StepRecord>;
  events$: Observable<RunEvent>;
}

export interface RunObserver {
  close(): Promise<void>;
}
