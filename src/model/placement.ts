// Where each parameter lives and which kernels touch it (TF's log_device_placement; seed 001's lesson).
import type { Tower } from './tower.js';
import { updateKernels } from './passes.js';

export interface ParamPlacement {
  name: string;
  shape: number[];
  numel: number;
  /** Element offset of its views in the weight and gradient arenas. */
  offset: number;
  /** The kernels of its layer that read it forward and write its gradient backward (a conv bias: conv2d's). */
  forward: string;
  backward: string;
  /** What updates it after the all-reduce: its norm (+ L2) kernel, then its fused clip/optimizer/EMA kernel (Note [Fused parameter tail]; [] on an evaluation-only tower). */
  update: string[];
}

/** One entry per parameter, in arena order; every kernel named is one the tower's programs really use. */
export function placementOf(tower: Tower): ParamPlacement[] {
  const update = updateKernels(tower.network, tower.training);
  return tower.params.map((p, i) => ({
    name: p.name,
    shape: p.shape,
    numel: p.numel,
    offset: p.offset,
    forward: p.kernels.forward,
    backward: p.kernels.backward,
    update: update[i]!,
  }));
}
