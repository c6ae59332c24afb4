// The shard of the arenas a tower owns under the sharded update (Note [Sharded update] in sharded-update.ts): its
// pieces (views of each parameter cut by the shard), its shard-sized optimizer slot arenas and the norm partials.
import type { Param, TowerMemory } from './memory.js';
import { shardBounds } from '../scheduler/shards.js';

/** This tower's place: its rank among `towers`. */
export interface ShardPlace {
  rank: number;
  towers: number;
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

/** The shards of a 2N-float partials buffer: two floats per tower. */
export function partialShards(towers: number): Array<[number, number]> {
  return shardBounds(2 * towers, towers, 2);
}

/** Views of this tower's pieces, its shard-sized slot arenas and the partials buffer. */
export function planShard(mem: TowerMemory, arenas: { weightArena: number; gradArena: number; emaArena?: number; paramCount: number; params: Param[] }, place: ShardPlace, slots: number): ShardPlan {
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
  return { place, offset, length, pieces, optimizerNumel: slots * length, partials, mine: { ...all[place.rank]!, both: mem.view(partials, 2 * place.rank, 2) }, all };
}
