// The shard of the arenas a tower owns under the sharded update (Note [Sharded update] in sharded-update.ts): its
// pieces (views of each parameter cut by the shard), its shard-sized optimizer slot arenas and the norm partials.
import type { Op } from '../backend/backend.js';
import type { Param, SharedArenas, TowerMemory } from './memory.js';
import { shardBounds } from '../scheduler/shards.js';

// Note [Shared weights]: the sharded update's weight all-gather copies every tower's updated shard into every other
// tower's weight arena. Where the towers' memory is one address space (native devices whose Backend::hostMemory is
// true: cpu), the towers need not hold copies at all: tower 0 builds first and every other tower takes tower 0's
// weight and EMA arenas as its own (Backend.share, a buffer of its device over the same memory), so each tower's
// fused update writes its shard straight into the weights every tower reads, and the all-gather has nothing left
// to copy. What stays is its ordering, kept by barriers:
//  - no tower writes its shard of step t before every tower has read the weights of step t: the update follows the
//    gradient reduce-scatter, whose entry barrier every tower reaches only after its backward (the last reader);
//  - no tower reads the weights of step t+1 before every tower has written its shard: the weight all-gather is
//    replaced by a barrier (a collective with no phases: only its entry barrier), the step program's last op, so the
//    next step (pipelined or not) starts after it;
//  - the start-up broadcast has nothing to copy (it is a barrier too), and the EMA restart, a resume, a
//    rollback or a rebroadcast write each tower's own pieces only (disjoint ranges whose union is every element),
//    so no two towers ever write the same element.
// Replicas are then bit-identical by construction (there is one copy); the replica check still hashes each tower's
// view. Evaluation, readWeights and checkpoints read the one copy. The optimizer slots stay per tower (shard-sized),
// and the gradient arenas stay per tower (each tower's backward writes its own). Towers that cannot share (the
// float64 reference backend, devices with their own memory) keep their copies and the all-gather; every rank of a
// group does one or the other (TowerSet.build refuses a mix).

// Note [Shared gradients]: with shared weights and two towers, the towers share their gradient arenas as well (each
// takes the other's as a buffer of its own device), and the gradient reduce-scatter, the norm pass and the local
// norms fold into one pass per piece: `add_grad_norm` reads both towers' gradients at the piece (a + b: tower 0's
// plus tower 1's, the same sum the reduce-scatter forms) and writes the sum into this tower's shard-sized `reduced`
// buffer while adding its Σg² (and the L2 term and loss) into the tower's partials. The step's '@collective' on
// the gradient communicator is then a barrier (every backward has finished before anyone reads a
// peer's gradient), and the partials' all-gather after the pass is the barrier that keeps the next step's backward
// from overwriting a gradient a peer still reads. The pass runs in the step's reduce phase (its timings and trace
// show it there, as they show the reduce-scatter). The towers' own gradients are left as backward wrote them, so the
// local norms of Note [Non-finite guard] need not run every step: after a guard trip the tower computes them from
// its intact gradient (Tower.refreshLocalNorms) to name the tower and tensor. The 'received' fault point fires only
// in the tower's own shard and corrupts its own gradient there, right before the pass that receives the peer's
// values (only this tower reads that range, and a corrupted element outside it would have no effect on the update
// either way); the local norms after the trip then see it, where the reduce-scatter's local norms, taken before,
// would not (so would a 'reduce' fault: with no local check before the pass, the trip names the corrupted tower).
// readGradients overlays each tower's reduced shard on its own gradient, so
// it still shows the reduced (clipped) gradient. Three or more towers keep the transport's reduce-scatter (a sum of
// more than two needs the reduce-scatter's schedule) with the shared weights.
// Dense weights go further: their gradient x_tᵀ·dy_t is never written per tower. The towers also share their
// factors (each dense layer's x and dy, which backward leaves intact: planFactors checks that no later op writes
// them, and a row-count buffer the step writes first), backward runs `dense_backward` without dW, and in the reduce
// phase the owner of each weight piece forms the sum from both towers' factors with `dense_grad_norm` (tower 0's
// product, then tower 1's added: the a + b of add_grad_norm) in L2-sized chunks, norms it there and streams it into
// `reduced`. Per step that drops each tower's full dW write (4 MB per 1000×1000 layer) and the pass that read both
// back; the dW products are the same work, moved from backward to the reduce phase, and each tower does those of its
// shard. The bits differ from dense_backward + add_grad_norm by rounding (OpenBLAS's per-element sums depend on how a
// product is cut), not between replicas (one copy) nor runs (chunks cut by shape). The peer reads the factors after
// the gradient barrier and is done before the partials' barrier, so the next step cannot overwrite them under it.
// Faults keep their meaning: the 'gradient', 'reduce' and 'received' points also carry a '@fault' per formed weight
// on the tower's own dy ('wrap'/'base': the element's column, row 0), so a NaN at a weight element makes that column
// of the tower's contribution NaN; after a trip the tower recomputes its own dW of each formed weight into its
// gradient arena (refreshFormedOps) before its local norms, which then name it.

/** This tower's place: its rank among `towers`, and tower 0's arenas to share (ranks > 0; Note [Shared weights]). */
export interface ShardPlace {
  rank: number;
  towers: number;
  share?: SharedArenas;
}

/** A parameter cut by the shard: views that the fused kernels run on unchanged. */
export interface Piece {
  param: Param;
  /** Element offset in the arenas, and length. */
  start: number;
  numel: number;
  l2: number;
  w: number;
  g: number;
  slots: number[];
  ema?: number;
}

/** This tower's shard of a network's arenas and the buffers of the sharded tail. */
export interface ShardPlan {
  place: ShardPlace;
  /** The weight and EMA arenas are tower 0's memory (Note [Shared weights]). */
  shared: boolean;
  offset: number;
  length: number;
  pieces: Piece[];
  /** Elements of optimizer state this tower keeps (slot kinds × shard length). */
  optimizerNumel: number;
  /** 2N floats: [Σg², L2 loss] of every tower, this tower's at 2r; and views of its own two. */
  partials: number;
  mine: { normSq: number; regLoss: number; both: number };
  /** Views of every tower's pair, in rank order (summed by every tower alike). */
  all: Array<{ normSq: number; regLoss: number }>;
}

/** Whether a group folds the reduce-scatter into the norm pass (Note [Shared gradients]): shared weights, two towers. */
export function fusesReduce(sharedWeights: boolean, towers: number): boolean {
  return sharedWeights && towers === 2;
}

/** How the towers of a sharded group hold weights and gradients (the `started` event's `shardMemory`). */
export function shardMemory(sharedWeights: boolean, towers: number): 'copies' | 'shared weights' | 'shared weights and gradients' {
  return fusesReduce(sharedWeights, towers) ? 'shared weights and gradients' : sharedWeights ? 'shared weights' : 'copies';
}

/** A dense weight whose summed gradient the fused reduce forms from the towers' factors x and dy (Note [Shared gradients]). */
export interface WeightFactor {
  param: Param;
  x: number;
  dy: number;
  I: number;
  O: number;
}

/** A sharded tower's factors: its row-count buffer (this step's batch, written by the step) and its dense weights. */
export interface Factors {
  rows: number;
  maxBatch: number;
  weights: WeightFactor[];
}

/**
 * The dense weights of a backward op list whose x and dy stay as their `dense_backward` (accumulate 0, one per
 * weight) read them: no later op of the list writes either, so after backward they still give the weight's gradient.
 */
export function planFactors(mem: TowerMemory, params: Param[], backward: Op[], maxBatch: number): Factors {
  const byGrad = new Map(params.map((p) => [p.g, p]));
  const count = new Map<number, number>();
  for (const op of backward) if (op.kernel === 'dense_backward') count.set(op.outputs[0]!, (count.get(op.outputs[0]!) ?? 0) + 1);
  const weights = backward.flatMap((op, i): WeightFactor[] => {
    const param = op.kernel === 'dense_backward' ? byGrad.get(op.outputs[0]!) : undefined;
    if (!param || count.get(param.g) !== 1 || op.attrs?.accumulate) return [];
    const [x, , dy] = op.inputs as [number, number, number];
    if (backward.slice(i + 1).some((later) => later.outputs.includes(x) || later.outputs.includes(dy))) return [];
    return [{ param, x, dy, I: Number(op.attrs!.I), O: Number(op.attrs!.O) }];
  });
  return { rows: mem.alloc(1), maxBatch, weights };
}

/** What a tower gives its peer for the fused reduce: [rows, x, dy of each weight factor]. */
export function factorHandles(f: Factors): number[] {
  return [f.rows, ...f.weights.flatMap((w) => [w.x, w.dy])];
}

/** The reduce fused with the norm over shared gradient arenas (Note [Shared gradients]). */
export interface FusedReduce {
  /** Shard-sized: this tower's reduced gradient. */
  reduced: number;
  /** The plan's pieces with `g` a view of `reduced`. */
  pieces: Piece[];
  /** Per piece: views of tower 0's and tower 1's gradient at it. */
  sources: Array<[number, number]>;
  /** Per piece of a weight formed from the factors: its dense_grad_norm inputs after w, and attributes. */
  formed: Array<{ inputs: number[]; attrs: Record<string, number> } | undefined>;
  /** This tower's factors, when the peer's are shared: their dense_backward leaves dW alone. */
  factors?: Factors;
  /** A zero row count and two scalars: the local norms' recomputation after a trip (Tower.refreshLocalNorms). */
  scratch: { all: number; zero: number; s: number; loss: number };
}

/**
 * Shares the other tower's gradient arena (and factors) and plans the fused pass; `gradArenas`: every tower's, in rank
 * order; `factors`: this tower's, and every tower's factorHandles in rank order.
 */
export function planFusedReduce(mem: TowerMemory, plan: ShardPlan, gradArena: number, gradArenas: number[], factors?: { own: Factors; all: number[][] }): FusedReduce {
  if (gradArenas.length !== 2) throw new Error(`the fused reduce sums two towers' gradients; given ${gradArenas.length}`);
  const me = plan.place.rank;
  const share = (h: number, r: number, what: string) => {
    const s = mem.share(h);
    if (s === undefined) throw new Error(`tower ${me} cannot share tower ${r}'s ${what} though it shares its weights`);
    return s;
  };
  const arenas = gradArenas.map((h, r) => (r === me ? gradArena : share(h, r, 'gradient arena')));
  const lists = factors?.all.map((l, r) => (r === me ? l : l.map((h) => share(h, r, 'activations'))));
  const reduced = mem.alloc(Math.max(1, plan.length));
  const own = factors && lists?.every((l) => l.length === 1 + 2 * factors.own.weights.length) ? factors.own : undefined;
  const formed = plan.pieces.map((pc) => {
    const k = own ? own.weights.findIndex((w) => w.param === pc.param) : -1;
    if (k < 0) return undefined;
    const w = own!.weights[k]!;
    const t = (r: number) => [lists![r]![1 + 2 * k]!, lists![r]![2 + 2 * k]!, lists![r]![0]!];
    return { inputs: [...t(0), ...t(1)], attrs: { B: own!.maxBatch, I: w.I, O: w.O, at: pc.start - pc.param.offset } };
  });
  return {
    reduced,
    pieces: plan.pieces.map((pc) => ({ ...pc, g: mem.view(reduced, pc.start - plan.offset, pc.numel) })),
    sources: plan.pieces.map((pc) => [mem.view(arenas[0]!, pc.start, pc.numel), mem.view(arenas[1]!, pc.start, pc.numel)]),
    formed,
    ...(own && own.weights.length > 0 ? { factors: own } : {}),
    scratch: (() => {
      const all = mem.alloc(3);
      return { all, zero: mem.view(all, 0, 1), s: mem.view(all, 1, 1), loss: mem.view(all, 2, 1) };
    })(),
  };
}

/** The shards of a 2N-float partials buffer: two floats per tower. */
export function partialShards(towers: number): Array<[number, number]> {
  return shardBounds(2 * towers, towers, 2);
}

/** Views of this tower's pieces, its shard-sized slot arenas and the partials buffer. */
export function planShard(mem: TowerMemory, arenas: { weightArena: number; gradArena: number; emaArena?: number; paramCount: number; params: Param[]; sharedWeights?: boolean }, place: ShardPlace, slots: number): ShardPlan {
  const [offset, length] = shardBounds(arenas.paramCount, place.towers)[place.rank]!;
  const slotArenas = Array.from({ length: slots }, () => mem.alloc(Math.max(1, length)));
  const pieces = arenas.params.flatMap((p): Piece[] => {
    const lo = Math.max(p.offset, offset), hi = Math.min(p.offset + p.numel, offset + length);
    if (hi <= lo) return [];
    const n = hi - lo;
    return [
      {
        param: p,
        start: lo,
        numel: n,
        l2: p.l2,
        w: mem.view(arenas.weightArena, lo, n),
        g: mem.view(arenas.gradArena, lo, n),
        slots: slotArenas.map((a) => mem.view(a, lo - offset, n)),
        ...(arenas.emaArena !== undefined ? { ema: mem.view(arenas.emaArena, lo, n) } : {}),
      },
    ];
  });
  const partials = mem.alloc(2 * place.towers);
  const pair = (r: number) => ({ normSq: mem.view(partials, 2 * r, 1), regLoss: mem.view(partials, 2 * r + 1, 1) });
  const all = Array.from({ length: place.towers }, (_, r) => pair(r));
  return { place, shared: arenas.sharedWeights === true, offset, length, pieces, optimizerNumel: slots * length, partials, mine: { ...all[place.rank]!, both: mem.view(partials, 2 * place.rank, 2) }, all };
}
