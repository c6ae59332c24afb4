// Pipelined steps: what a step launched ahead of its predecessor's reply is, and when the loop may launch one.
import type { BatchPlan } from '../data/batches.js';
import type { FaultSpec, StepRequest } from '../tower-port/protocol.js';
import type { Settled } from './step.js';

// Note [Pipelined steps]: with `pipeline` on (the default), the train loop launches step t+1 on every tower while
// step t runs: its inputs (row indices, crops, the hyper block: learning rate, step number, gradient scale) are
// staged by runWith and its run is queued behind step t on each tower's device thread, so the device goes from t
// to t+1 without waiting on the JS round trip, the step event or the thread wake-ups. Replies are consumed
// ("landed") in step order, and a step's event is emitted only when it lands: nothing is reported before it is
// kept. Depth is one: at most one step waits behind the one running.
//
// Exactness. Step t+1's request is what the sequential loop would send after step t, whatever t's outcome short
// of a rollback: an applied and a skipped step both count (state.step + 1), the learning-rate scale changes only
// on a rollback, and the batch plan is fixed in advance. What t's outcome can change is handled on the devices:
// t+1 is launched `chained`, and a device cancels (does not run, writes nothing) a chained run when its previous
// step run tripped the non-finite guard or failed (cpp/napi/programs.cc: Device::lastRun; the reference backend
// alike). The guard reads the reduced gradient, the same bits on every tower, so every tower cancels alike and no
// tower waits in an all-reduce the others never join. Then:
//   - 'halt': t+1 was cancelled; the run halts naming step t with the weights after step t, as sequentially.
//   - 'skip': t+1 was cancelled, so the local gradients that name the tower and tensor are still step t's; after
//     the 'skipped' event t+1 is launched again, unchained, with the very same request and faults.
//   - 'rollback': t+1 was cancelled; the checkpoint is restored and the loop restarts from it.
//   A non-finite loss with a finite reduced gradient (a tower's loss is local, so the guard cannot see it without
//   towers disagreeing) does not trip the guard: step t's update was applied, and t+1 ran behind it. 'skip' stays
//   exact (t+1 is the step the sequential loop runs next; only if t+1's own gradient were non-finite could t's
//   description name t+1's tensor); 'rollback' restores over it, exact; 'halt' fails with the same error, but the
//   weights a later read sees are one step (t+1, never reported) further than sequentially. This is the one case
//   where pipelined and sequential differ.
// A failure of step t (dead tower, deadline, error) is reported by step t's root cause (step.ts); t+1, cancelled
// on the towers whose step t failed, is never landed or named, and the group is aborted so that no tower waits in
// its all-reduce. Each step's deadline starts when the step before it on that tower settles (Note [Step deadline
// timer]), so it covers its own run, not the wait behind its predecessor.
//
// What stays synchronous (the pipeline is drained, step t landed with nothing behind it, before any of these):
// replica checks, checkpoints, the end of an epoch and evaluation (they read the weights after step t exactly),
// weight histograms (their steps are known in advance: read in the gap right after), work queued for the gap
// between steps (state reads: every tower after the same step; a read queued while a step is in flight waits for
// the next gap, as a read queued from an asap-scheduled steps$ subscriber always did), a pending reduction strategy (a schedule is never changed under a collective), and stop (checked before
// each launch; a step already launched is landed and reported, then the run stops). Not pipelined at all: 'speed'
// shares (the split of t+1 depends on t's timings) and runs over several processes (every rank agrees on the loss
// and on stopping after each step, world.afterStep). The asynchronous mode steps through the same launcher unchained.

/** A step launched on every tower whose replies are not yet consumed. */
export interface Flight {
  /** The step's 1-based number. */
  step: number;
  batch: BatchPlan;
  shards: Shards;
  /** The faults armed for it, kept so a relaunch arms the same ones. */
  faults: Array<FaultSpec | undefined>;
  settled: Promise<Settled>;
}

export interface Shards {
  /** This process's towers' shard sizes, and every tower's of every process (Note [Process dimension]). */
  sizes: number[];
  allSizes: number[];
  requests: StepRequest[];
  lr: number;
  /** When the step was launched (performance.now()). */
  startMs: number;
}

/** True when every tower's device cancelled the chained step (its predecessor tripped the guard). */
export function cancelled(settled: Settled): boolean {
  return settled.every((s) => s.status === 'fulfilled' && s.value.cancelled === true);
}

/** Why the loop runs unpipelined, or undefined when it pipelines (Note [Pipelined steps]). */
export function unpipelined(pipeline: boolean | undefined, shares: 'equal' | 'speed', processes: number): string | undefined {
  if (pipeline === false) return 'pipeline: false';
  if (shares === 'speed') return "'speed' shares";
  if (processes > 1) return 'several processes';
  return undefined;
}
