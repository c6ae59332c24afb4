// What a layer module declares (Note [Layer modules] in ../network.ts): from its input shape, its output shape and
// parameters; given buffers, its forward and backward ops.
import type { Op } from '../../backend/backend.js';
import type { InitSpec, LayerSpec } from '../spec.js';
import type { Param, ParamKernels } from '../memory.js';

/** A trainable tensor a layer declares; the tower names it '<layer name>/<suffix>' and gives it arena views. */
export interface ParamDecl {
  suffix: string;
  shape: number[];
  init: InitSpec;
  /** Weight of TF's l2_loss on this tensor (0: none). */
  l2: number;
  /** Glorot fans. */
  fanIn: number;
  fanOut: number;
  kernels: ParamKernels;
}

/** Where a layer is, for its messages and defaults. */
export interface LayerSite {
  /** Position in spec.layers. */
  index: number;
  /** "model 'm' layer 3 (conv2d 'conv1')": the start of every error about this layer. */
  where: string;
}

/** What a layer does to one example, decided before any buffer exists. */
export interface LayerPlan {
  /** Output shape per example. */
  out: number[];
  params: ParamDecl[];
  /** Every kernel the layer's forward and backward ops use. */
  kernels: string[];
  /** Allocates the layer's buffers (at the tower's maxBatch) and returns its op builders. */
  build(ctx: BuildContext): Layer;
}

export interface BuildContext {
  maxBatch: number;
  /** Input activations (maxBatch x prod(input shape)). */
  x: number;
  /** Their gradient; null when no layer before this one is trainable (Note [No gradient before training]). */
  dx: number | null;
  /** x is the linear output of a dense or conv2d layer: an activation may overwrite it (Note [In-place activation]). */
  inPlace: boolean;
  /** This layer's parameters, in the order of its plan's params. */
  params: Param[];
  /** The step's hyper-parameter buffer (src/native/hyper.ts), for kernels that read the step t. */
  hyper: number;
  /** A buffer of this tower, freed with it. */
  alloc(numel: number, dtype?: 'f32' | 'i32'): number;
}

export interface ForwardContext {
  B: number;
  /** Training (dropout on) or evaluation (dropout is the identity). */
  train: boolean;
  /** Read the parameters' EMA instead of the weights. */
  useEma: boolean;
}

/** A layer with buffers: its output and that output's gradient (null: no backward needed), and its ops at batch B. */
export interface Layer {
  y: number;
  dy: number | null;
  /**
   * Whether an activation right after this layer may run in place on y: true after a linear dense/conv2d, false
   * after anything else, 'inherit' for layers that only rename the shape (flatten, reshape).
   */
  inPlaceNext: boolean | 'inherit';
  forward(f: ForwardContext): Op[];
  backward(B: number): Op[];
}

/** One layer kind: a spec of its type in, a plan out. Validation messages start with site.where. */
export interface LayerModule<S extends LayerSpec = LayerSpec> {
  plan(spec: S, input: number[], site: LayerSite): LayerPlan;
}

export const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** A gradient buffer of n values, or null when the layer's input needs none. */
export function gradFor(ctx: BuildContext, n: number): number | null {
  return ctx.dx === null ? null : ctx.alloc(n);
}

/** The weight a forward pass reads: the parameter itself or its EMA. */
export function weight(p: Param, useEma: boolean): number {
  if (!useEma) return p.w;
  if (p.ema === undefined) throw new Error(`parameter '${p.name}' has no EMA (set training.emaDecay)`);
  return p.ema;
}
