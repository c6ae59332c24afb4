// The step program: one whole training step as one op list (input, forward, backward, all-reduce, update), with
// '@mark's between its phases and a '@fault' at each fault point.
import type { Op } from '../backend/backend.js';
import type { Network } from './network.js';
import type { ResolvedTrainingOptions } from './optimizer.js';
import { faultOp } from './fault.js';
import { backwardOps, forwardOps, localNormOps, lossOps, paramNormOps, updateOps } from './passes.js';
import { overlappedReduceOps, type OverlapSlot } from './overlap-ops.js';
import { factorOps, fusedReduceOps, shardedUpdateOps, type FusedReduce, type ShardComms } from './sharded-update.js';

export const STEP_PHASES = ['input', 'forward', 'backward', 'reduce', 'update'] as const;

/** Milliseconds per phase of one step, measured on the device thread from the step program's marks. */
export interface StepTimings {
  /** When the step started on the device thread (ms on the process-wide clock, native nowMs()). */
  startMs: number;
  input: number;
  forward: number;
  backward: number;
  reduce: number;
  update: number;
  total: number;
}

/** A tower's place in a collective: the communicator over the towers' gradient arenas and its rank there. */
export interface CollectiveSlot {
  comm: number;
  rank: number;
  /** The gradient all-reduce overlapped with backward, bucket by bucket (src/model/overlap-ops.ts). */
  overlap?: OverlapSlot;
  /** With the sharded update: `comm` is the gradient reduce-scatter, these the tail's all-gathers (Note [Sharded update]). */
  shard?: ShardComms;
}

/** See Tower.stepLaunch. */
export interface StepLaunch {
  program: number;
  indices: number;
  hyper: number;
  crop?: number;
  /** Data loss, L2 loss, squared global gradient norm. */
  reads: number[];
}

export interface StepResult {
  timings: StepTimings;
  /** The non-finite guard stopped the update (the reduced gradient norm was NaN or infinite). */
  skipped: boolean;
  /** This shard's data loss (already weighted by gradScale), the L2 penalty, the reduced gradient's norm. */
  loss: number;
  regLoss: number;
  gradNorm: number;
  /** Time spent waiting for the other towers inside the all-reduce. */
  reduceWaitMs: number;
}

/** The phase a running step program is in, from how many of its five '@mark's have passed. */
export function phaseOf(st: { marks: ArrayLike<number>; currentOp: number }): (typeof STEP_PHASES)[number] | undefined {
  if (st.currentOp < 0) return undefined;
  const done = Array.from(st.marks).filter((x) => x >= 0).length;
  return STEP_PHASES[Math.min(done, STEP_PHASES.length - 1)];
}

/** Turns the marks of a step program's run into per-phase milliseconds. */
export function stepTimings(marks: ArrayLike<number>, startMs: number): StepTimings {
  const m = marks;
  return m.length >= 5
    ? { startMs, input: m[0]!, forward: m[1]! - m[0]!, backward: m[2]! - m[1]!, reduce: m[3]! - m[2]!, update: m[4]! - m[3]!, total: m[4]! }
    : { startMs: 0, input: 0, forward: 0, backward: 0, reduce: 0, update: 0, total: 0 };
}

// Note [Non-finite guard]: each tower records Σg² per tensor of its own gradient before the all-reduce
// (P tiny reductions, one pass over the gradients, no host copy), and every tower checks the reduced norm
// with a '@guard' op before clipping and updating. All towers see the same reduced norm, so they all skip
// or all apply; the per-tensor local sums are read only after a trip, to name the tower and the tensor.

const mark: Op = { kernel: '@mark', inputs: [], outputs: [] };

/** The step program at batch B after `input` (the dataset gather, or nothing for host batches); Note [Fault points]. */
export function stepOps(net: Network, B: number, input: Op[], collective: CollectiveSlot | undefined, t: ResolvedTrainingOptions, fused?: FusedReduce): Op[] {
  return [...computeOps(net, B, input, collective, fused), faultOp('update', net.weightArena), ...tailOps(net, collective, t, fused), mark];
}

/** The update after the collective: the whole arena's (Note [Fused parameter tail]) or this tower's shard's. */
function tailOps(net: Network, collective: CollectiveSlot | undefined, t: ResolvedTrainingOptions, fused: FusedReduce | undefined): Op[] {
  if (!net.shard) return updateOps(net, t, collective === undefined);
  if (!collective?.shard) throw new Error('a tower built for the sharded update steps only in its group (joinGroup with the shard communicators)');
  return shardedUpdateOps(net.buffers, t, net.shard, collective.shard, fused);
}

/**
 * The asynchronous mode's step program (Note [Parameter server] in cpp/ps/server.h): the step program up to its
 * collective point, without the all-reduce, then the update's first pass (Note [Fused parameter tail]: L2 into the
 * gradient with the weights it was computed on, the global squared norm (3rd read), the L2 loss (2nd read)); clipping
 * and the optimizer run on the server when the gradient is pushed, with that norm (Note [Global norm across shards]).
 */
export function gradientOps(net: Network, B: number, input: Op[]): Op[] {
  const { normSq, regLoss } = net.buffers;
  return [
    ...computeOps(net, B, input, undefined),
    { kernel: 'fill', inputs: [], outputs: [regLoss], attrs: { N: 1, value: 0 } },
    { kernel: 'fill', inputs: [], outputs: [normSq], attrs: { N: 1, value: 0 } },
    ...paramNormOps(net, true),
    mark,
  ];
}

/** Input, forward, loss, backward, local norms and the collective point: everything before the update. */
function computeOps(net: Network, B: number, input: Op[], collective: CollectiveSlot | undefined, fusedReduce?: FusedReduce): Op[] {
  const { x, loss } = net.buffers;
  const ov = collective?.overlap ? overlappedReduceOps(net, backwardOps(net, B), collective.overlap, collective.rank) : undefined;
  // The fused reduce (Note [Shared gradients]): local norms only after a trip; 'received' only in this tower's shard,
  // before the pass, which is this step's reduce phase.
  // Weights formed from the towers' factors: this step's row count, no dW in backward, faults on the factors too.
  const fused = collective?.shard?.gradients !== undefined;
  const fo = factorOps(fusedReduce, B);
  return [
    ...input,
    ...fo.rows,
    mark,
    faultOp('forward', x),
    ...forwardOps(net, B, { train: true, useEma: false }),
    ...lossOps(net, B),
    mark,
    faultOp('backward', loss),
    ...(ov ? ov.backward : [...fo.backward(backwardOps(net, B)), ...fo.faults('gradient'), faultOp('gradient', net.gradArena), ...(fused ? [] : localNormOps(net, net.params, !collective))]),
    mark,
    ...(ov ? ov.wait : [...fo.faults('reduce'), faultOp('reduce', net.gradArena)]),
    ...(collective && !ov ? [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm: collective.comm, rank: collective.rank } }] : []),
    ...fo.faults('received'),
    fused && net.shard ? faultOp('received', net.gradArena, { from: net.shard.offset, to: net.shard.offset + net.shard.length }) : faultOp('received', net.gradArena),
    ...(fusedReduce && net.shard ? fusedReduceOps(net.shard, fusedReduce) : []),
    mark,
  ];
}
