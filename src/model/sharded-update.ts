// The sharded optimizer update (ZeRO-1): each tower updates only its shard of the flat arenas and keeps only its
// shard of the optimizer state; the collectives are in src/scheduler/shards.ts, the communicators in
// src/group/shard-comms.ts.
import type { Backend, Op } from '../backend/backend.js';
import type { ResolvedTrainingOptions } from './optimizer.js';
import { fusedUpdateOp } from './optimizer.js';
import type { Param } from './memory.js';
import type { NetworkBuffers } from './network.js';
import { paramNormOp } from './passes.js';
import { factorFaultOp } from './fault.js';
import type { FusedReduce, Piece, ShardPlan } from './shard-plan.js';
import { ConfigError } from '../errors.js';

// Note [Sharded update]: with `shardUpdate` on (2+ towers of one process, native cpu or the float64 reference),
// tower r owns shard r = shardBounds(paramCount, N)[r] of the flat arenas (whole cache lines) and the step's tail is:
//  1. '@collective' reduce-scatter of the gradient arena: tower r holds the summed gradient of its shard only;
//  2. per "piece" (a parameter cut by the shard; views of w, g, the optimizer slots and the EMA) the norm op of
//     Note [Fused parameter tail] into this tower's two partials (Σg², L2 loss) at slots 2r, 2r+1 of a 2N-float buffer;
//  3. '@collective' all-gather of that buffer (copied verbatim), then every tower sums the N partials in rank order
//     with `axpy` into normSq and regLoss: the same op sequence on the same bits, so every tower has the same normSq
//     and regLoss bit for bit, and the '@guard' on normSq trips on every tower alike (a trip ends the program before
//     any weight changes, the all-gathers included; the local norms before the collective still name the tower);
//  4. the fused clip/update/EMA kernel per piece (elementwise: cutting a parameter changes no bits), clipping by the
//     global norm of step 3;
//  5. '@collective' all-gather of the weight arena (and of the EMA arena when kept): every tower copies the other
//     shards verbatim, so replicas stay bit-identical (the replica hash checks it) and evaluation sees the full EMA.
//     Towers that share tower 0's weight and EMA arenas run only this collective's barrier (Note [Shared weights]).
// Optimizer slots are one arena per slot kind sized to the shard: optimizer memory per tower drops by N. The
// checkpoint format does not change: the coordinator merges each tower's owned ranges into full tensors
// (mergeOwned), and each tower takes its ranges back on resume, so sharded and unsharded runs resume each other.
// Versus the unsharded update only the summation order changes (the reduce-scatter adds peers in rank order; the
// norm is summed per piece and then per tower), so the two agree to rounding, not bit for bit: `shardUpdate` is part
// of the run's layout (a resume that changes it is told the trajectory is no longer bit-identical).
// Not supported (refused by checkShardUpdate): several processes, `overlap`, async mode. One tower: a no-op. The
// reduction option does not apply (the reduce-scatter is one phase: in one process towers read each other's memory
// directly), so setReduction during a sharded run is refused rather than ignored. Towers whose memory is shared
// (cpu) hold one weight and EMA arena, so the all-gather copies nothing (Note [Shared weights]), and two of them fold
// the reduce-scatter and every norm pass into one pass (Note [Shared gradients]): per step each tower then reads both
// gradients at its shard once (dense weights: forms them there from both towers' activations instead), runs the
// update on its shard, and meets the other at three barriers, with no copy at all.
// Default (shardUpdateByDefault): on for exactly two native CPU towers in one synchronous process, without `overlap`
// and without a chosen reduction strategy (createRuntime's `reduction`, other than 'auto', or setReduction before the
// run): there it won every case measured (`npm run bench -- shard-default`: 2 towers on the 2-core bench machine,
// interleaved, best of 4 median step times, 2026-12-01): MNIST 784-500-10 B=128 momentum 1.35 against 1.45 ms, the
// same with Adam 1.42 / 1.55, 784-1024-10 momentum 2.88 / 3.31, the block network (Adam, clip) 18.5 / 26.5 ms (an
// earlier probe: 1.41 / 1.50, 1.51 / 1.65, 3.37 / 3.79, 18.8 / 25.6). Elsewhere it stays off unless asked: 3+ towers
// take the reduce-scatter path, unmeasured here. `shardUpdate: false` (--no-shard-update) turns the
// default off; the `started` event (optimizerBytes, shardMemory) and the run's layout say when it is on.
// The shard and its views are planned in shard-plan.ts.

export { factorHandles, partialShards, planFactors, planFusedReduce, planShard, type Factors, type FusedReduce, type Piece, type ShardPlace, type ShardPlan } from './shard-plan.js';

/** The communicators of the sharded tail (src/group/shard-comms.ts), one rank each. */
export interface ShardComms {
  partials: number;
  weights: number;
  ema?: number;
  /** Shared weights, two towers: every tower's gradient arena, for the fused reduce (Note [Shared gradients]). */
  gradients?: number[];
  /** With `gradients`: every tower's factor handles (factorHandles), for the weights formed from them. */
  factors?: number[][];
}

const collective = (comm: number, rank: number): Op => ({ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } });

/**
 * The fused reduce (Note [Shared gradients]): step 1's sums and step 2's norm partials in one pass per piece, run in
 * the step's reduce phase right after the gradient collective's barrier.
 */
export function fusedReduceOps(plan: ShardPlan, fused: FusedReduce): Op[] {
  const { normSq: s, regLoss: loss } = plan.mine;
  // add_grad_norm: w, a, b (N) -> g = a + b (+ lambda w), s += Σg², loss += lambda ½Σw²
  const reduceNorm = (pc: Piece, [a, b]: [number, number]): Op => ({ kernel: 'add_grad_norm', inputs: [pc.w, a, b], outputs: [pc.g, s, loss], attrs: { N: pc.numel, lambda: pc.l2 } });
  // dense_grad_norm: w (N), x0, dy0, n0, x1, dy1, n1 -> g = [at, at+N) of x0ᵀdy0 + x1ᵀdy1 (+ lambda w), s, loss as above
  const formNorm = (pc: Piece, f: { inputs: number[]; attrs: Record<string, number> }): Op => ({ kernel: 'dense_grad_norm', inputs: [pc.w, ...f.inputs], outputs: [pc.g, s, loss], attrs: { N: pc.numel, lambda: pc.l2, ...f.attrs } });
  const piece = (pc: Piece, k: number) => (fused.formed[k] ? formNorm(pc, fused.formed[k]) : reduceNorm(pc, fused.sources[k]!));
  return [{ kernel: 'fill', inputs: [], outputs: [plan.mine.both], attrs: { N: 2, value: 0 } }, ...fused.pieces.map(piece)];
}

/**
 * The step's ops that change where the fused reduce forms weight gradients from the factors (Note [Shared gradients]):
 * the row count written first, dense_backward without dW, and each fault point's '@fault' on a weight's own dy (the
 * element's column, row 0) ahead of the point's plain op; 'received' only at the pieces of this tower's shard.
 */
export function factorOps(fused: FusedReduce | undefined, B: number) {
  const f = fused?.factors;
  const formedBy = new Map(f?.weights.map((w) => [w.param.g, w]));
  return {
    rows: f ? [{ kernel: 'fill', inputs: [], outputs: [f.rows], attrs: { N: 1, value: B } }] : [],
    backward: (ops: Op[]): Op[] => (f ? ops.map((op) => (op.kernel === 'dense_backward' && formedBy.has(op.outputs[0]!) ? { ...op, attrs: { ...op.attrs, noWeightGrad: 1 } } : op)) : ops),
    faults: (point: 'gradient' | 'reduce' | 'received'): Op[] => {
      if (!f || !fused) return [];
      const at = (w: (typeof f.weights)[number], from: number, to: number) => factorFaultOp(point, w.dy, { from, to, wrap: w.O, base: w.param.offset });
      if (point !== 'received') return f.weights.map((w) => at(w, w.param.offset, w.param.offset + w.param.numel));
      return fused.pieces.flatMap((pc, k) => (fused.formed[k] ? [at(formedBy.get(pc.param.g)!, pc.start, pc.start + pc.numel)] : []));
    },
  };
}

/** After a guard trip, each formed weight's own gradient (its factors alone, into its gradient view), then local norms. */
export function refreshFormedOps(fused: FusedReduce): Op[] {
  const f = fused.factors;
  if (!f) return [];
  const { all, zero, s, loss } = fused.scratch;
  return [
    { kernel: 'fill', inputs: [], outputs: [all], attrs: { N: 3, value: 0 } },
    ...f.weights.map((w): Op => ({
      kernel: 'dense_grad_norm',
      inputs: [w.param.w, w.x, w.dy, f.rows, w.x, w.dy, zero],
      outputs: [w.param.g, s, loss],
      attrs: { N: w.param.numel, B: f.maxBatch, I: w.I, O: w.O, at: 0, lambda: 0 },
    })),
  ];
}

/**
 * Steps 2-5 of Note [Sharded update] (step 1 is the step program's '@collective' on the reduce-scatter); with `fused`,
 * steps 1 and 2 ran as fusedReduceOps and the update works on its reduced pieces (Note [Shared gradients]).
 */
export function shardedUpdateOps(buffers: NetworkBuffers, t: ResolvedTrainingOptions, plan: ShardPlan, comms: ShardComms, fused?: FusedReduce): Op[] {
  const { regLoss, normSq, hyper } = buffers;
  const { rank } = plan.place;
  const add = (x: number, y: number): Op => ({ kernel: 'axpy', inputs: [x], outputs: [y], attrs: { N: 1, alpha: 1 } });
  const pieces = fused?.pieces ?? plan.pieces;
  return [
    ...(fused ? [] : [{ kernel: 'fill', inputs: [], outputs: [plan.mine.both], attrs: { N: 2, value: 0 } }, ...plan.pieces.map((pc) => paramNormOp(pc, plan.mine))]),
    collective(comms.partials, rank),
    { kernel: 'fill', inputs: [], outputs: [regLoss], attrs: { N: 1, value: 0 } },
    { kernel: 'fill', inputs: [], outputs: [normSq], attrs: { N: 1, value: 0 } },
    ...plan.all.flatMap((q) => [add(q.normSq, normSq), add(q.regLoss, regLoss)]),
    { kernel: '@guard', inputs: [normSq], outputs: [] },
    ...pieces.map((pc) => fusedUpdateOp(t, pc, normSq, hyper)),
    collective(comms.weights, rank),
    ...(comms.ema !== undefined ? [collective(comms.ema, rank)] : []),
  ];
}

const slotName = (p: Param, k: number) => `optimizer/${p.name}/${k}`;

/**
 * The tower's state in readState()'s names and order; each optimizer tensor holds this tower's owned range (zeros
 * elsewhere) for the coordinator to merge (mergeOwned).
 */
export function readShardState(backend: Backend, params: Param[], plan: ShardPlan, slots: number): Array<{ name: string; shape: number[]; data: Float32Array }> {
  return params.flatMap((p) => {
    const slotData = Array.from({ length: slots }, () => new Float32Array(p.numel));
    for (const pc of plan.pieces.filter((x) => x.param === p)) pc.slots.forEach((h, k) => slotData[k]!.set(backend.copyOut(h), pc.start - p.offset));
    return [
      { name: p.name, shape: p.shape, data: Float32Array.from(backend.copyOut(p.w)) },
      ...slotData.map((data, k) => ({ name: slotName(p, k), shape: p.shape, data })),
      ...(p.ema !== undefined ? [{ name: `ema/${p.name}`, shape: p.shape, data: Float32Array.from(backend.copyOut(p.ema)) }] : []),
    ];
  });
}

/** Checks the full optimizer tensors a sharded tower takes its ranges from; returns the copies to make. */
export function shardSlotWrites(params: Param[], plan: ShardPlan, slots: number, model: string, tensors: Map<string, ArrayLike<number>>): Array<[number, Float32Array]> {
  for (const p of params)
    for (let k = 0; k < slots; k++) {
      const v = tensors.get(slotName(p, k));
      if (!v) throw new Error(`checkpoint has no tensor '${slotName(p, k)}' that model '${model}' needs (is it from another model or optimizer?)`);
      if (v.length !== p.numel) throw new RangeError(`checkpoint tensor '${slotName(p, k)}' has ${v.length} values; model '${model}' expects ${p.numel} (shape ${p.shape.join('x')})`);
    }
  return plan.pieces.flatMap((pc) =>
    pc.slots.map((h, k): [number, Float32Array] => {
      const v = tensors.get(slotName(pc.param, k))!;
      const from = pc.start - pc.param.offset;
      return [h, Float32Array.from({ length: pc.numel }, (_, i) => v[from + i]!)];
    }),
  );
}

/** Writes each piece's `g` (the fused reduce's sums) over its range of the per-parameter copies in `out`. */
export function overlayPieces(backend: Backend, pieces: Piece[], out: Map<string, Float32Array>): void {
  for (const pc of pieces) out.get(pc.param.name)!.set(backend.copyOut(pc.g), pc.start - pc.param.offset);
}

/** With shared weights, the ranges of the weights and EMA this tower writes: its own pieces (Note [Shared weights]). */
export function sharedWeightWrites(plan: ShardPlan, tensors: Map<string, ArrayLike<number>>): Array<[number, Float32Array]> {
  const part = (name: string, pc: Piece) => {
    const from = pc.start - pc.param.offset;
    return Float32Array.from({ length: pc.numel }, (_, i) => tensors.get(name)![from + i]!);
  };
  return plan.pieces.flatMap((pc): Array<[number, Float32Array]> => [
    [pc.w, part(pc.param.name, pc)],
    ...(pc.ema !== undefined ? [[pc.ema, part(`ema/${pc.param.name}`, pc)] as [number, Float32Array]] : []),
  ]);
}

/**
 * Full tensors from every tower's copies: a tensor of parameter `paramOf(name)` takes each element from the tower
 * whose shard holds it (Note [Sharded update]); other tensors (weights, EMA: equal on every tower) from tower 0.
 */
export function mergeOwned(
  perTower: Array<Map<string, Float32Array>>,
  params: Array<{ name: string; offset: number; numel: number }>,
  shards: Array<[number, number]>,
  paramOf: (tensor: string) => string | undefined,
): Map<string, Float32Array> {
  const byName = new Map(params.map((p) => [p.name, p]));
  const out = new Map<string, Float32Array>();
  for (const [name, first] of perTower[0]!) {
    const p = byName.get(paramOf(name) ?? '');
    if (!p) {
      out.set(name, first);
      continue;
    }
    const full = new Float32Array(p.numel);
    shards.forEach(([off, len], r) => {
      const lo = Math.max(p.offset, off), hi = Math.min(p.offset + p.numel, off + len);
      if (hi > lo) full.set(perTower[r]!.get(name)!.subarray(lo - p.offset, hi - p.offset), lo - p.offset);
    });
    out.set(name, full);
  }
  return out;
}

/** The parameter an optimizer tensor ('optimizer/<param>/<k>') belongs to. */
export function slotParam(tensor: string): string | undefined {
  const m = /^optimizer\/(.+)\/\d+$/.exec(tensor);
  return m?.[1];
}

/**
 * Whether a run that leaves `shardUpdate` unset gets the sharded update (Note [Sharded update], "Default"): exactly
 * two native CPU towers, one process, synchronous, no `overlap`, and no reduction strategy chosen (a strategy sums the
 * gradient with its own schedule, which the sharded tail does not use).
 */
export function shardUpdateByDefault(o: { overlap?: boolean; mode?: string }, run: { devices: string[]; processes: number; reductionChosen: boolean }): boolean {
  return o.mode !== 'async' && !o.overlap && run.processes === 1 && !run.reductionChosen && run.devices.length === 2 && run.devices.every((d) => /^cpu:\d+$/.test(d));
}

/** Refuses what the sharded update does not support, saying what to change. */
export function checkShardUpdate(o: { shardUpdate?: boolean; overlap?: boolean; mode?: string }, processes: number): void {
  if (!o.shardUpdate) return;
  const why =
    o.mode === 'async'
      ? "mode 'async' (the parameter server holds the optimizer state)"
      : o.overlap
        ? 'overlap (the bucketed all-reduce has no reduce-scatter)'
        : processes > 1
          ? `a run over ${processes} processes (the sharded update works within one process)`
          : undefined;
  if (why) throw new ConfigError(`shardUpdate: true cannot be combined with ${why}; drop shardUpdate (--shard-update) or that setting`, 'shardUpdate');
}
