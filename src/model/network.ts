// The model spec made concrete on one device: each layer's plan (shapes, checked), the parameters in their arenas,
// the activation buffers, and the buffers of the loss head and the step.
import type { ResolvedModelSpec } from './spec.js';
import { allocateParams, type Param, type ParamRequest, type TowerMemory } from './memory.js';
import { planLayer } from './layers/registry.js';
import { prod, type Layer, type LayerPlan } from './layers/layer.js';
import { HYPER_SIZE } from '../native/hyper.js';
import { planShard, type ShardPlace, type ShardPlan } from './shard-plan.js';

// Note [Layer modules]: each layer kind is one file in src/model/layers/ that declares, from its input shape, its
// output shape, its parameters (shape, initialiser, L2, kernels) and every kernel it uses, and, given buffers, its
// forward and backward ops (registry.ts maps the spec's type to it). The network below threads buffers from layer
// to layer and applies two rules the modules only read from their BuildContext:
//
// Note [In-place activation]: an activation layer right after a linear dense/conv2d output (flatten and reshape in
// between are fine) runs in place on that output: its y is the layer's y and its dy the layer's dy, and its
// backward reads the activated output. The network input is never written in place.
//
// Note [No gradient before training]: layers before the first trainable one get dx = null: they allocate no
// gradient and add no backward ops.

/** Buffers of one tower besides the layers' own (maxBatch rows where batched). */
export interface NetworkBuffers {
  /** The batch input (B, inputDim), its labels (B) i32 and the dataset rows to gather (B) i32. */
  x: number;
  labels: number;
  idx: number;
  /** The step's hyper-parameters (src/native/hyper.ts). */
  hyper: number;
  /** Scalars: data loss, L2 loss, squared global gradient norm, correct count. */
  loss: number;
  regLoss: number;
  normSq: number;
  correct: number;
  /** The network output (B, outputDim), its gradient, and the softmax probabilities (B, outputDim). */
  logits: number;
  dLogits: number;
  probs: number;
}

export interface Network {
  spec: ResolvedModelSpec;
  inputShape: number[];
  inputDim: number;
  outputDim: number;
  plans: LayerPlan[];
  layers: Layer[];
  params: Param[];
  weightArena: number;
  gradArena: number;
  emaArena?: number;
  paramCount: number;
  buffers: NetworkBuffers;
  /** With the sharded update: this tower's shard (Note [Sharded update]); its params then keep no optimizer slots. */
  shard?: ShardPlan;
}

/** Each layer's plan, in order; throws naming the layer when a shape does not fit. */
export function planNetwork(spec: ResolvedModelSpec): LayerPlan[] {
  let shape = spec.input.shape;
  return spec.layers.map((layer, index) => {
    const where = `model '${spec.name}' layer ${index} (${layer.type}${layer.name ? ` '${layer.name}'` : ''})`;
    const plan = planLayer(layer, shape, { index, where });
    shape = plan.out;
    return plan;
  });
}

/** Allocates everything a tower of this spec needs at maxBatch and builds its layers. */
export function buildNetwork(spec: ResolvedModelSpec, mem: TowerMemory, maxBatch: number, opt: { slots: number; ema: boolean; shard?: ShardPlace }): Network {
  const plans = planNetwork(spec);
  const requests: ParamRequest[] = plans.flatMap((plan, li) => {
    const layer = spec.layers[li]!;
    const base = layer.name ?? `${layer.type}_${li}`;
    return plan.params.map(({ suffix, ...d }) => ({ ...d, name: `${base}/${suffix}` }));
  });
  const share = opt.shard?.share;
  const arenas = allocateParams(mem, requests, { ema: opt.ema, emaArena: opt.shard !== undefined, slots: opt.shard ? 0 : opt.slots, ...(share ? { share } : {}) });
  const shard = opt.shard ? planShard(mem, arenas, opt.shard, opt.slots) : undefined;
  const inputDim = prod(spec.input.shape);
  const x = mem.alloc(maxBatch * inputDim);
  const hyper = mem.alloc(HYPER_SIZE);

  let cur = x;
  let curGrad: number | null = null;
  let inPlace = false;
  let next = 0;
  const layers: Layer[] = [];
  for (const plan of plans) {
    const params = arenas.params.slice(next, (next += plan.params.length));
    const layer = plan.build({ maxBatch, x: cur, dx: curGrad, inPlace, params, hyper, alloc: (n, dtype) => mem.alloc(n, dtype) });
    layers.push(layer);
    cur = layer.y;
    curGrad = layer.dy;
    if (layer.inPlaceNext !== 'inherit') inPlace = layer.inPlaceNext;
  }
  if (curGrad === null) throw new Error(`model '${spec.name}' has no dense or conv2d layer: nothing to train`);
  const outputDim = prod(plans[plans.length - 1]!.out);
  const buffers: NetworkBuffers = {
    x,
    labels: mem.alloc(maxBatch, 'i32'),
    idx: mem.alloc(maxBatch, 'i32'),
    hyper,
    loss: mem.alloc(1),
    regLoss: mem.alloc(1),
    normSq: mem.alloc(1),
    correct: mem.alloc(1),
    logits: cur,
    dLogits: curGrad,
    probs: mem.alloc(maxBatch * outputDim),
  };
  return { spec, inputShape: [...spec.input.shape], inputDim, outputDim, plans, layers, ...arenas, buffers, ...(shard ? { shard } : {}) };
}
