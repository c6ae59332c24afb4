// Steps in flight: sending step t+1 to the towers before step t's reply is read (Note [Pipelined steps] in
// src/model/step-program.ts), and what must wait for the reply instead.
import type { BatchPlan } from '../data/batches.js';
import type { FaultSpec, StepReply, StepRequest } from '../tower-port/protocol.js';
import { stepAll } from './step.js';
import type { TowerSet } from './towers.js';

/** One step sent to every tower. */
export interface InFlight {
  batch: BatchPlan;
  /** Steps done before it: it is step stepsBefore + 1. */
  stepsBefore: number;
  sizes: number[];
  requests: StepRequest[];
  lr: number;
  faults: Array<FaultSpec | undefined>;
  /** When it was sent (performance.now()). */
  sentMs: number;
  replies: Promise<StepReply[]>;
  /** Settles (never rejects) when every tower has answered or failed. */
  settled: Promise<unknown>;
}

export type Unsent = Omit<InFlight, 'sentMs' | 'replies' | 'settled'>;

// What stays synchronous (the next step is sent only after this one's reply has been handled), and why:
//   - a step followed by work between steps (replica check, checkpoint, end of epoch and its evaluation, state
//     reads queued by the app): that work reads the towers after exactly this step;
//   - the last step of the run, and any step once stop() was asked: nothing may run that the run does not keep;
//   - a step while a new reduction is pending: a schedule is installed only while no collective is queued;
//   - the non-finite policy: the device holds a step queued behind a tripped one (every tower alike), and the
//     coordinator first lets it settle, then halts, rolls back (restoring the checkpoint; the held step is
//     dropped) or skips (sending the held step again, now resuming), exactly as if it had waited.
// A step sent when nothing is in flight "resumes": it releases a tower held behind an earlier trip.

/** Sends `s` to every tower now; `resume` when no other step is in flight. */
export function send(towers: TowerSet, s: Unsent, deadlineMs: number, resume: boolean): InFlight {
  const requests = resume ? s.requests.map((q) => ({ ...q, resume: true })) : s.requests;
  const replies = stepAll(towers, s.stepsBefore + 1, requests, deadlineMs, s.faults);
  const settled = replies.catch(() => undefined);
  return { ...s, requests: s.requests, sentMs: performance.now(), replies, settled };
}
