// Pipelined steps: what a step launched ahead of its predecessor's reply is, and when the loop may launch one.
import type { BatchPlan } from '../data/batches.js';
import type { FaultSpec, StepRequest } from '../tower-port/protocol.js';
import type { Settled } from './step.js';

// Note [Pipelined steps]: with `pipeline` on (the default), the train loop launches steps t+1 and t+2 on every
// tower while step t runs: their inputs (row indices, crops, the hyper block: learning rate, step number, gradient
// scale) are staged by runWith and their runs are queued behind step t on each tower's device thread, so the device
// goes from t to t+1 without waiting on the JS round trip, the step event or the thread wake-ups. Replies are
// consumed ("landed") in step order, and a step's event is emitted only when it lands: nothing is reported before
// it is kept. Depth is two (PIPELINE_DEPTH): when step t lands, t+1 runs and t+2 waits behind it, and t+3 is
// launched; so a JS thread woken up to a whole step late (its core taken by the device's GEMM threads or by another
// process) still finds the device busy. With depth one the device ran dry whenever t's reply was handled after t+1
// ended (bench/towers-step.ts: the mean gap between two step programs was several times the median).
// A reply may reach this thread up to one step program (at most 10 ms) late (Note [Wake-ups in idle time] in
// cpp/idle_work.h: with more work queued, a device thread with no spinning helper wakes this thread when it would
// wait anyway); with depth two the device still has t+2 to run when that happens.
//
// Exactness. Step t+1's request is what the sequential loop would send after step t, whatever t's outcome short
// of a rollback: an applied and a skipped step both count (state.step + 1), the learning-rate scale changes only
// on a rollback, and the batch plan is fixed in advance; likewise t+2's after t+1. What an outcome can change is
// handled on the devices: a step launched behind an unlanded one is `chained`, and a device cancels (does not run,
// writes nothing) a chained run when its previous step run tripped the non-finite guard, failed, or was itself
// cancelled (cpp/napi/programs.cc: Device::lastRun stays as it is on a cancel; the reference backend alike): a
// trip at t cancels t+1 and t+2. The guard reads the reduced gradient, the same bits on every tower, so every
// tower cancels alike and no tower waits in an all-reduce the others never join. Every step behind t settles
// before the policy acts. Then:
//   - 'halt': the steps behind were cancelled; the run halts naming step t with the weights after step t, as
//     sequentially.
//   - 'skip': the steps behind were cancelled, so the local gradients that name the tower and tensor are still
//     step t's; after the 'skipped' event they are launched again with the very same requests and faults (t+1
//     unchained, t+2 chained behind it).
//   - 'rollback': the steps behind were cancelled; the checkpoint is restored and the loop restarts from it.
//   A non-finite loss with a finite reduced gradient (a tower's loss is local, so the guard cannot see it without
//   towers disagreeing) does not trip the guard: step t's update was applied, and the steps behind ran. 'skip' stays
//   exact (t+1 is the step the sequential loop runs next; only if t+1's own gradient were non-finite could t's
//   description name t+1's tensor); 'rollback' restores over them, exact; 'halt' fails with the same error, but
//   the weights a later read sees are up to two steps (t+1, t+2, never reported) further than sequentially. This
//   is the one case where pipelined and sequential differ.
// A failure of step t (dead tower, deadline, error) is reported by step t's root cause (step.ts); the steps behind,
// cancelled on the towers whose step t failed, are never landed or named, and the group is aborted so that no tower
// waits in their all-reduce. Each step's deadline starts when the step before it on that tower settles (Note [Step
// deadline timer]), so it covers its own run, not the wait behind its predecessors.
//
// What stays synchronous (the pipeline is drained, step t landed with nothing behind it, before any of these):
// replica checks (with more than one tower in all: one tower has nothing to compare, and its check reads nothing),
// checkpoints, the end of an epoch and evaluation (they read the weights after step t exactly),
// weight histograms (their steps are known in advance: read in the gap right after), work queued for the gap
// between steps (state reads: every tower after the same step; a read queued while steps are in flight waits for
// the next gap, as a read queued from a steps$ subscriber always did: Note [Run stream delivery]), a pending reduction
// strategy (a schedule is never changed under a collective), and stop (checked before each launch; the steps
// already launched are landed and reported, then the run stops). Not pipelined at all: 'speed' shares (the split of
// t+1 depends on t's timings) and runs over several processes (every rank agrees on the loss and on stopping after
// each step, world.afterStep). The asynchronous mode steps through the same launcher unchained.

/** How many steps may be in flight behind the one landing (Note [Pipelined steps]). */
export const PIPELINE_DEPTH = 2;

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
