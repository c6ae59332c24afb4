// A tower's device memory: every buffer it owns (freed together), and its parameters as views into one flat weight
// arena and one flat gradient arena (llm.c's one parameter buffer), so an all-reduce or a broadcast is one
// collective over one buffer.
import type { Backend, DType } from '../backend/backend.js';
import type { InitSpec } from './spec.js';

/** The kernels that read a parameter forward and write its gradient backward (the placement report names them). */
export interface ParamKernels {
  forward: string;
  backward: string;
}

/** A trainable tensor and the buffers that belong to it. Handles are device buffer ids. */
export interface Param {
  name: string;
  shape: number[];
  numel: number;
  /** Element offset of its views in the weight and gradient arenas. */
  offset: number;
  w: number;
  g: number;
  /** Optimizer slots (momentum: 1, Adam: 2). */
  slots: number[];
  ema?: number;
  l2: number;
  fanIn: number;
  fanOut: number;
  init: InitSpec;
  /** The kernels of its layer that read and write it. */
  kernels: ParamKernels;
  /** Σ g² of this tower's own gradient before the all-reduce: names the tower and tensor of a non-finite value. */
  localNormSq: number;
}

/** A parameter as a layer declares it, named. */
export type ParamRequest = Omit<Param, 'numel' | 'offset' | 'w' | 'g' | 'slots' | 'ema' | 'localNormSq'>;

function unreachable(why: string): never {
  throw new Error(`unreachable: ${why}`);
}

/** Owns buffers on one backend; free() releases them all, views before their arenas. */
export class TowerMemory {
  private readonly owned: number[] = [];

  constructor(readonly backend: Backend) {}

  alloc(numel: number, dtype: DType = 'f32'): number {
    const h = this.backend.alloc(numel, dtype);
    this.owned.push(h);
    return h;
  }

  /** Another device's buffer as this backend's own (shared memory, Note [Shared weights]); undefined where it cannot be. */
  share(parent: number): number | undefined {
    const h = this.backend.share?.(parent);
    if (h !== undefined) this.owned.push(h);
    return h;
  }

  view(parent: number, offset: number, numel: number): number {
    const h = this.backend.allocView(parent, offset, numel);
    this.owned.push(h);
    return h;
  }

  free(): void {
    for (const h of this.owned.reverse()) this.backend.free(h);
    this.owned.length = 0;
  }
}

export interface Arenas {
  weightArena: number;
  gradArena: number;
  /** With an EMA and `emaArena`: every parameter's EMA as a view into one arena (the sharded update all-gathers it). */
  emaArena?: number;
  paramCount: number;
  params: Param[];
  /** The weight (and EMA) arena is another tower's memory (Note [Shared weights] in shard-plan.ts). */
  sharedWeights?: boolean;
}

/** Another tower's weight and EMA arenas, to share where the backend can (Note [Shared weights] in shard-plan.ts). */
export interface SharedArenas {
  weightArena: number;
  emaArena?: number;
}

/**
 * The two arenas and each parameter's views into them (in declaration order), plus its optimizer slots, EMA and
 * local norm scalar. `slots` per parameter: 0 for SGD, 1 momentum, 2 Adam; `ema` when the run keeps one.
 */
export function allocateParams(mem: TowerMemory, requests: ParamRequest[], opts: { slots: number; ema: boolean; emaArena?: boolean; share?: SharedArenas }): Arenas {
  const numels = requests.map((r) => r.shape.reduce((a, b) => a * b, 1));
  const paramCount = numels.reduce((a, b) => a + b, 0);
  const keepEma = opts.ema && opts.emaArena;
  // Both arenas shared, or neither: the EMA is shared only where the weights are (the same two devices).
  const share = opts.share && (!keepEma || opts.share.emaArena !== undefined) ? opts.share : undefined;
  const sharedW = share ? mem.share(share.weightArena) : undefined;
  const weightArena = sharedW ?? mem.alloc(Math.max(1, paramCount));
  const gradArena = mem.alloc(Math.max(1, paramCount));
  const sharedEma = () => mem.share(share!.emaArena!) ?? unreachable('the weight arena was shared but the EMA arena was not');
  const emaArena = !keepEma ? undefined : sharedW !== undefined ? sharedEma() : mem.alloc(Math.max(1, paramCount));
  let offset = 0;
  const params = requests.map((r, i): Param => {
    const numel = numels[i]!;
    const p: Param = {
      ...r,
      numel,
      offset,
      w: mem.view(weightArena, offset, numel),
      g: mem.view(gradArena, offset, numel),
      slots: Array.from({ length: opts.slots }, () => mem.alloc(numel)),
      ...(opts.ema ? { ema: emaArena !== undefined ? mem.view(emaArena, offset, numel) : mem.alloc(numel) } : {}),
      localNormSq: mem.alloc(1),
    };
    offset += numel;
    return p;
  });
  return { weightArena, gradArena, ...(emaArena !== undefined ? { emaArena } : {}), paramCount, params, ...(sharedW !== undefined ? { sharedWeights: true } : {}) };
}
