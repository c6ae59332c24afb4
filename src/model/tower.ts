// One model replica on one device: its weights, gradients, optimizer state and the compiled step programs.
import type { Backend, Op } from '../backend/backend.js';
import { initTensor } from './init.js';
import { parseModelSpec, type InitSpec, type LayerSpec, type ModelSpec, type ResolvedModelSpec } from './spec.js';
import { parseTrainingOptions, slotCount, updateOp, type ResolvedTrainingOptions, type TrainingOptions } from './optimizer.js';
import { Rng } from '../util/rng.js';

/** A trainable tensor and the buffers that belong to it. Handles are device buffer ids. */
export interface Param {
  name: string;
  shape: number[];
  numel: number;
  w: number;
  g: number;
  slots: number[];
  ema?: number;
  l2: number;
  fanIn: number;
  fanOut: number;
  /** Σ g² of this tower's own gradient before the all-reduce: names the tower and tensor of a non-finite value. */
  localNormSq: number;
}

/** Examples already in device memory (uploaded once); a step then only sends row indices. */
export interface DeviceDataset {
  images: number;
  labels: number;
  count: number;
  dim: number;
  scale: number;
  /** Images stored larger than the model input, cropped (and flipped, standardised) natively per batch. */
  transform?: DeviceImageTransform;
}

/**
 * How an uploaded u8 NHWC image set becomes the model input: the CIFAR-10 tutorial's crop, horizontal flip and
 * per-image standardisation (kernel crop_flip_standardize_u8). 'random' crops take their [dy, dx, flip] per example
 * from Tower.setCropParams before each step (see src/data/cifar10.ts cropParams); 'center' crops are fixed.
 */
export interface ImageTransform {
  kind: 'cropFlipStandardize';
  /** Stored image size; the crop size is the model's input shape [OH, OW, C]. */
  height: number;
  width: number;
  channels: number;
  mode: 'random' | 'center';
}

export interface DeviceImageTransform {
  mode: 'random' | 'center';
  H: number;
  W: number;
  C: number;
  OH: number;
  OW: number;
  /** (maxBatch, 3) i32 params buffer the kernel reads. */
  params: number;
}

export type BatchSource =
  | { kind: 'indices'; dataset: DeviceDataset; indices: Int32Array }
  | { kind: 'direct'; x: Float32Array; labels: Int32Array };

/** Milliseconds per phase of one step, measured on the device thread (see Tower.trainStep). */
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

/** Fault injection for tests (off unless asked): see Note [Fault injection] in src/actors/tower-worker.ts. */
export interface StepFault {
  stallMs?: { phase: 'forward' | 'backward' | 'reduce' | 'update'; ms: number };
  nanAt?: number;  // element of the gradient arena set to NaN before the all-reduce
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

export const STEP_PHASES = ['input', 'forward', 'backward', 'reduce', 'update'] as const;

/** The phase a running step program is in, from how many of its five '@mark's have passed. */
export function phaseOf(st: { marks: ArrayLike<number>; currentOp: number }): (typeof STEP_PHASES)[number] | undefined {
  if (st.currentOp < 0) return undefined;
  const done = Array.from(st.marks).filter((x) => x >= 0).length;
  return STEP_PHASES[Math.min(done, STEP_PHASES.length - 1)];
}

/** See Tower.stepLaunch. */
export interface StepLaunch {
  program: number;
  indices: number;
  hyper: number;
  crop?: number;
  reads: number[];
}

/** Turns the marks of a step program's run into per-phase milliseconds. */
export function stepTimings(marks: ArrayLike<number>, startMs: number): StepTimings {
  const m = marks;
  return m.length >= 5
    ? { startMs, input: m[0]!, forward: m[1]! - m[0]!, backward: m[2]! - m[1]!, reduce: m[3]! - m[2]!, update: m[4]! - m[3]!, total: m[4]! }
    : { startMs: 0, input: 0, forward: 0, backward: 0, reduce: 0, update: 0, total: 0 };
}

/** A tower's place in a collective: the communicator over the towers' gradient arenas and its rank there. */
export interface CollectiveSlot {
  comm: number;
  rank: number;
}

export interface TowerOptions {
  /** Largest batch this tower will ever run (activation buffers are sized for it). */
  maxBatch: number;
  /** Training settings; omit for an evaluation-only tower. */
  training?: TrainingOptions;
}

// Per-layer plan: what forward and backward do, in terms of activation buffer handles. A null dx means the layer's
// input needs no gradient (nothing trainable before it); a null dy means the layer needs no backward at all.
// Spatial geometry (per example, NHWC): H, W, C in; KH, KW, SH, SW, padding (0 VALID, 1 SAME); OH, OW out.
interface Geom {
  H: number;
  W: number;
  C: number;
  KH: number;
  KW: number;
  SH: number;
  SW: number;
  padding: number;
  OH: number;
  OW: number;
}
type Step =
  | { kind: 'dense'; param: number; inDim: number; outDim: number; x: number; y: number; dx: number | null; dy: number; act: string }
  | { kind: 'act'; act: string; dim: number; x: number; y: number; dx: number | null; dy: number | null }
  | { kind: 'conv'; param: number; g: Geom; K: number; x: number; y: number; dx: number | null; dy: number; act: string }
  | { kind: 'pool'; g: Geom; x: number; y: number; argmax: number; dx: number | null; dy: number | null }
  | { kind: 'lrn'; n: number; C: number; depthRadius: number; bias: number; alpha: number; beta: number; x: number; y: number; scale: number; dx: number | null; dy: number | null }
  | { kind: 'dropout'; dim: number; keepProb: number; seed: number; x: number; y: number; mask: number; dx: number | null; dy: number | null };

/** One spatial output size (docs/kernels.md): SAME ceil(in/s); VALID floor((in − k)/s) + 1, needing in >= k. */
function spatialOut(inSize: number, k: number, s: number, same: boolean, where: string): number {
  if (same) return Math.ceil(inSize / s);
  if (inSize < k) throw new RangeError(`${where}: a VALID window of ${k} does not fit an input of ${inSize}; use padding 'same' or a smaller window`);
  return Math.floor((inSize - k) / s) + 1;
}

function geometry(shape: number[], k: [number, number], s: [number, number], padding: 'same' | 'valid', where: string): Geom {
  if (shape.length !== 3) throw new RangeError(`${where} needs an image input (H, W, C), got shape [${shape.join(', ')}]; give input.shape as [H, W, C]`);
  const [H, W, C] = shape as [number, number, number];
  const same = padding === 'same';
  return { H, W, C, KH: k[0], KW: k[1], SH: s[0], SW: s[1], padding: same ? 1 : 0, OH: spatialOut(H, k[0], s[0], same, where), OW: spatialOut(W, k[1], s[1], same, where) };
}

const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** Per layer: its output shape (per example) and the shapes of its trainable tensors, checked against its input. */
function planShapes(spec: ResolvedModelSpec): Array<{ out: number[]; geom?: Geom; params: number[][] }> {
  let shape = spec.input.shape;
  return spec.layers.map((layer, li) => {
    const where = `model '${spec.name}' layer ${li} (${layer.type}${layer.name ? ` '${layer.name}'` : ''})`;
    switch (layer.type) {
      case 'dense': {
        const inDim = prod(shape);
        shape = [layer.units];
        return { out: shape, params: [[inDim, layer.units], [layer.units]] };
      }
      case 'conv2d': {
        const g = geometry(shape, layer.kernel, layer.strides, layer.padding, where);
        shape = [g.OH, g.OW, layer.filters];
        return { out: shape, geom: g, params: [[g.KH, g.KW, g.C, layer.filters], [layer.filters]] };
      }
      case 'maxpool': {
        const g = geometry(shape, layer.pool, layer.strides ?? layer.pool, layer.padding, where);
        shape = [g.OH, g.OW, g.C];
        return { out: shape, geom: g, params: [] };
      }
      case 'flatten':
        shape = [prod(shape)];
        return { out: shape, params: [] };
      case 'reshape':
        if (prod(layer.shape) !== prod(shape))
          throw new RangeError(`${where}: cannot reshape [${shape.join(', ')}] (${prod(shape)} values) to [${layer.shape.join(', ')}] (${prod(layer.shape)} values)`);
        shape = layer.shape;
        return { out: shape, params: [] };
      default:
        return { out: shape, params: [] };
    }
  });
}

const HYPER_SIZE = 8;

export class Tower {
  readonly spec: ResolvedModelSpec;
  readonly params: Param[] = [];
  readonly inputDim: number;
  readonly outputDim: number;
  readonly training?: ResolvedTrainingOptions;
  readonly maxBatch: number;
  /** The per-example input shape ([D], or [H, W, C] for images). */
  readonly inputShape: number[];
  /** Each parameter's initialiser, in parameter order. */
  private readonly inits: InitSpec[] = [];
  /** (maxBatch, 3) i32 [dy, dx, flip] of the next batch's random crops, allocated by the first 'random' upload. */
  private cropParams: number | undefined;

  // Buffers owned by this tower.
  private readonly x: number;
  private readonly labels: number;
  private readonly idx: number;
  private readonly hyper: number;
  private readonly loss: number;
  private readonly regLoss: number;
  private readonly normSq: number;
  private readonly correct: number;
  private readonly probs: number;
  private readonly logits: number;
  private readonly dLogits: number;
  private readonly steps: Step[] = [];
  private readonly owned: number[] = [];
  private readonly programs = new Map<string, number>();
  private readonly hyperHost = new Float32Array(HYPER_SIZE);
  private disposed = false;
  /** All weights in one flat buffer, and all gradients in another: each parameter is a view into them, so an
   * all-reduce or a broadcast is one collective over one buffer. */
  readonly weightArena: number;
  readonly gradArena: number;
  readonly paramCount: number;

  constructor(
    readonly backend: Backend,
    spec: ModelSpec | ResolvedModelSpec,
    opts: TowerOptions,
  ) {
    this.spec = parseModelSpec(spec);
    if (!Number.isInteger(opts.maxBatch) || opts.maxBatch < 1)
      throw new RangeError(`Tower: maxBatch must be a positive integer, got ${String(opts.maxBatch)}`);
    this.maxBatch = opts.maxBatch;
    if (opts.training) this.training = parseTrainingOptions(opts.training);
    const B = opts.maxBatch;
    const buf = (n: number, dtype: 'f32' | 'i32' = 'f32') => {
      const h = backend.alloc(n, dtype);
      this.owned.push(h);
      return h;
    };

    this.inputDim = prod(this.spec.input.shape);
    // Parameter sizes first (conv kernels [KH,KW,C,K] and biases [K], dense [I,O] and [O]), so the arenas can be
    // allocated before the views.
    const shapes = planShapes(this.spec);
    this.paramCount = shapes.reduce((a, l) => a + l.params.reduce((b, p) => b + prod(p), 0), 0);
    this.weightArena = buf(Math.max(1, this.paramCount));
    this.gradArena = buf(Math.max(1, this.paramCount));
    this.x = buf(B * this.inputDim);
    this.labels = buf(B, 'i32');
    this.idx = buf(B, 'i32');
    this.hyper = buf(HYPER_SIZE);
    this.loss = buf(1);
    this.regLoss = buf(1);
    this.normSq = buf(1);
    this.correct = buf(1);

    // Forward plan: each layer owns one output buffer and one gradient buffer; activations run in place on the
    // output of a linear dense/conv layer (their backward reads the activated output). Layers before the first
    // trainable one need no gradient (dx/dy null: their backward is skipped), and the network input is never
    // written in place.
    let cur = this.x;
    let curGrad: number | null = null;
    let shape = this.spec.input.shape;
    const grad = (n: number): number | null => (curGrad === null ? null : buf(n));
    this.spec.layers.forEach((layer: LayerSpec, li) => {
      const plan = shapes[li]!;
      const n = prod(shape);
      const prev = this.steps[this.steps.length - 1];
      switch (layer.type) {
        case 'flatten':
        case 'reshape':
          break;  // row-major (B, ...) is already any shape of the same size
        case 'dense': {
          const name = layer.name ?? `dense_${li}`;
          const pw = this.addParam(`${name}/kernel`, [n, layer.units], layer.l2, n, layer.units, buf, layer.kernelInit);
          this.addParam(`${name}/bias`, [layer.units], 0, n, layer.units, buf, layer.biasInit);
          const y = buf(B * layer.units);
          const dy = buf(B * layer.units);
          this.steps.push({ kind: 'dense', param: pw, inDim: n, outDim: layer.units, x: cur, y, dx: curGrad, dy, act: layer.activation });
          cur = y;
          curGrad = dy;
          break;
        }
        case 'conv2d': {
          const g = plan.geom!;
          const K = layer.filters;
          const name = layer.name ?? `conv2d_${li}`;
          const recept = g.KH * g.KW;
          const pw = this.addParam(`${name}/kernel`, [g.KH, g.KW, g.C, K], layer.l2, recept * g.C, recept * K, buf, layer.kernelInit);
          this.addParam(`${name}/bias`, [K], 0, recept * g.C, recept * K, buf, layer.biasInit);
          const m = B * g.OH * g.OW * K;
          const y = buf(m);
          const dy = buf(m);
          this.steps.push({ kind: 'conv', param: pw, g, K, x: cur, y, dx: curGrad, dy, act: layer.activation });
          cur = y;
          curGrad = dy;
          break;
        }
        case 'relu':
        case 'sigmoid':
        case 'tanh': {
          const inPlace = prev !== undefined && (prev.kind === 'dense' || prev.kind === 'conv') && prev.act === 'linear' && prev.y === cur;
          if (inPlace) {
            this.steps.push({ kind: 'act', act: layer.type, dim: n, x: cur, y: cur, dx: curGrad, dy: curGrad });
            break;
          }
          const y = buf(B * n);
          const dy = grad(B * n);
          this.steps.push({ kind: 'act', act: layer.type, dim: n, x: cur, y, dx: curGrad, dy });
          cur = y;
          curGrad = dy;
          break;
        }
        case 'maxpool': {
          const g = plan.geom!;
          const m = B * g.OH * g.OW * g.C;
          const y = buf(m);
          const argmax = buf(m, 'i32');
          const dy = grad(m);
          this.steps.push({ kind: 'pool', g, x: cur, y, argmax, dx: curGrad, dy });
          cur = y;
          curGrad = dy;
          break;
        }
        case 'lrn': {
          const C = shape[shape.length - 1]!;
          const y = buf(B * n);
          const scale = buf(B * n);
          const dy = grad(B * n);
          this.steps.push({ kind: 'lrn', n: n / C, C, depthRadius: layer.depthRadius, bias: layer.bias, alpha: layer.alpha, beta: layer.beta, x: cur, y, scale, dx: curGrad, dy });
          cur = y;
          curGrad = dy;
          break;
        }
        case 'dropout': {
          const y = buf(B * n);
          const mask = buf(B * n);
          const dy = grad(B * n);
          // The mask is a function of (seed, step t from hyper[1], element): a fresh mask per step, the same on every run.
          this.steps.push({ kind: 'dropout', dim: n, keepProb: 1 - layer.rate, seed: layer.seed ?? 7919 * (li + 1), x: cur, y, mask, dx: curGrad, dy });
          cur = y;
          curGrad = dy;
          break;
        }
      }
      shape = plan.out;
    });
    if (curGrad === null) throw new Error(`model '${this.spec.name}' has no dense or conv2d layer: nothing to train`);
    this.inputShape = [...this.spec.input.shape];
    this.outputDim = prod(shape);
    this.logits = cur;
    this.dLogits = curGrad;
    this.probs = buf(B * this.outputDim);
  }

  private addParam(name: string, shape: number[], l2: number, fanIn: number, fanOut: number, buf: (n: number) => number, init: InitSpec): number {
    this.inits.push(init);
    const numel = shape.reduce((a, b) => a * b, 1);
    const nSlots = this.training ? slotCount(this.training.optimizer) : 0;
    const offset = this.params.reduce((a, q) => a + q.numel, 0);
    const view = (arena: number) => {
      const h = this.backend.allocView(arena, offset, numel);
      this.owned.push(h);
      return h;
    };
    const p: Param = {
      name,
      shape,
      numel,
      w: view(this.weightArena),
      g: view(this.gradArena),
      slots: Array.from({ length: nSlots }, () => buf(numel)),
      ...(this.training?.emaDecay !== undefined ? { ema: buf(numel) } : {}),
      l2,
      fanIn,
      fanOut,
      localNormSq: buf(1),
    };
    this.params.push(p);
    return this.params.length - 1;
  }

  /** Seeded initialisation: the same seed gives the same weights bit for bit, on any backend. */
  initWeights(seed: number): void {
    const root = new Rng(seed);
    this.params.forEach((p, i) => {
      const values = initTensor(this.inits[i]!, p.numel, p.fanIn, p.fanOut, root.fork(i));
      this.backend.copyIn(p.w, values);
      if (p.ema !== undefined) this.backend.copyIn(p.ema, values);
    });
  }

  /**
   * Uploads a labelled u8 dataset into device memory once; steps then gather rows by index natively. With an image
   * `transform`, the images are (count, height, width, channels) and each batch is cropped to the model's input
   * [OH, OW, C], flipped and standardised natively (kernel crop_flip_standardize_u8; `scale` is then unused).
   */
  uploadDataset(images: Uint8Array, labels: Uint8Array, count: number, scale = 1 / 255, transform?: ImageTransform): DeviceDataset {
    const dim = images.length / count;
    let tr: DeviceImageTransform | undefined;
    if (transform) {
      const { height: H, width: W, channels: C } = transform;
      const [OH, OW, IC] = this.inputShape as [number, number, number];
      if (this.inputShape.length !== 3 || IC !== C || OH > H || OW > W)
        throw new RangeError(`uploadDataset: images of ${H}x${W}x${C} cannot be cropped to model '${this.spec.name}''s input [${this.inputShape.join(', ')}]; expected an input [OH, OW, ${C}] with OH <= ${H}, OW <= ${W}`);
      if (dim !== H * W * C)
        throw new RangeError(`uploadDataset: ${images.length} image bytes over ${count} examples is ${dim} per example; ${H}x${W}x${C} images have ${H * W * C}`);
      let params: number;
      if (transform.mode === 'random') {
        params = this.cropParams ??= (() => {
          const h = this.backend.alloc(3 * this.maxBatch, 'i32');
          this.owned.push(h);
          return h;
        })();
      } else {
        params = this.backend.alloc(3 * this.maxBatch, 'i32');
        this.owned.push(params);
        const central = new Int32Array(3 * this.maxBatch);
        for (let b = 0; b < this.maxBatch; b++) {
          central[3 * b] = Math.floor((H - OH) / 2);
          central[3 * b + 1] = Math.floor((W - OW) / 2);
        }
        this.backend.copyIn(params, central);
      }
      tr = { mode: transform.mode, H, W, C, OH, OW, params };
    } else if (!Number.isInteger(dim) || dim !== this.inputDim) {
      throw new RangeError(`uploadDataset: ${images.length} image bytes over ${count} examples is ${dim} per example; model '${this.spec.name}' expects ${this.inputDim}`);
    }
    if (labels.length !== count) throw new RangeError(`uploadDataset: ${labels.length} labels for ${count} examples`);
    const img = this.backend.alloc(images.length, 'u8');
    const lab = this.backend.alloc(count, 'u8');
    this.owned.push(img, lab);
    this.backend.copyIn(img, images);
    this.backend.copyIn(lab, labels);
    return { images: img, labels: lab, count, dim, scale, ...(tr ? { transform: tr } : {}) };
  }

  /**
   * The [dy, dx, flip] of each example of the next batch on a 'random' crop dataset (3 ints per example; see
   * src/data/cifar10.ts cropParams). A few hundred bytes per step; the images never leave the device.
   */
  setCropParams(params: Int32Array): void {
    if (this.cropParams === undefined) throw new Error(`setCropParams on ${this.backend.name}: no dataset with random crops was uploaded`);
    if (params.length % 3 !== 0 || params.length > 3 * this.maxBatch)
      throw new RangeError(`setCropParams on ${this.backend.name}: ${params.length} values; expected 3 per example, at most ${this.maxBatch} examples`);
    this.backend.copyIn(this.cropParams, params);
  }

  // ---- op lists ---------------------------------------------------------------------------------------------

  private inputOps(B: number, dataset?: DeviceDataset): Op[] {
    if (!dataset) return [];
    const D = this.inputDim;
    const t = dataset.transform;
    return [
      t
        ? { kernel: 'crop_flip_standardize_u8', inputs: [dataset.images, this.idx, t.params], outputs: [this.x], attrs: { B, R: dataset.count, H: t.H, W: t.W, C: t.C, OH: t.OH, OW: t.OW } }
        : { kernel: 'gather_rows_u8', inputs: [dataset.images, this.idx], outputs: [this.x], attrs: { B, D, R: dataset.count, scale: dataset.scale } },
      { kernel: 'gather_labels_u8', inputs: [dataset.labels, this.idx], outputs: [this.labels], attrs: { B, R: dataset.count } },
    ];
  }

  /** Forward ops; `train` turns dropout on (evaluation runs it as the identity). */
  private forwardOps(B: number, useEma: boolean, train = false): Op[] {
    const ops: Op[] = [];
    const weights = (i: number): [number, number] => {
      const W = this.params[i]!, b = this.params[i + 1]!;
      return useEma ? [W.ema!, b.ema!] : [W.w, b.w];
    };
    const activate = (act: string, y: number, N: number): Op[] => (act === 'linear' ? [] : [{ kernel: `${act}_forward`, inputs: [y], outputs: [y], attrs: { N } }]);
    for (const s of this.steps) {
      switch (s.kind) {
        case 'dense': {
          const [w, bias] = weights(s.param);
          ops.push({ kernel: 'dense_forward', inputs: [s.x, w, bias], outputs: [s.y], attrs: { B, I: s.inDim, O: s.outDim } });
          ops.push(...activate(s.act, s.y, B * s.outDim));
          break;
        }
        case 'conv': {
          const [w, bias] = weights(s.param);
          ops.push({ kernel: 'conv2d_forward', inputs: [s.x, w, bias], outputs: [s.y], attrs: { B, ...s.g, K: s.K } });
          ops.push(...activate(s.act, s.y, B * s.g.OH * s.g.OW * s.K));
          break;
        }
        case 'act':
          ops.push({ kernel: `${s.act}_forward`, inputs: [s.x], outputs: [s.y], attrs: { N: B * s.dim } });
          break;
        case 'pool':
          ops.push({ kernel: 'maxpool_forward', inputs: [s.x], outputs: [s.y, s.argmax], attrs: { B, ...s.g } });
          break;
        case 'lrn':
          ops.push({ kernel: 'lrn_forward', inputs: [s.x], outputs: [s.y, s.scale], attrs: { N: B * s.n, C: s.C, depthRadius: s.depthRadius, bias: s.bias, alpha: s.alpha, beta: s.beta } });
          break;
        case 'dropout':
          ops.push(
            train
              ? { kernel: 'dropout_forward', inputs: [s.x, this.hyper], outputs: [s.y, s.mask], attrs: { N: B * s.dim, keepProb: s.keepProb, seed: s.seed } }
              : { kernel: 'copy', inputs: [s.x], outputs: [s.y], attrs: { N: B * s.dim } },
          );
          break;
      }
    }
    return ops;
  }

  private lossOps(B: number): Op[] {
    const C = this.outputDim;
    if (this.spec.loss === 'mean') return [{ kernel: 'mean_forward', inputs: [this.logits, this.hyper], outputs: [this.loss], attrs: { B, C } }];
    return [{ kernel: 'softmax_xent_forward', inputs: [this.logits, this.labels, this.hyper], outputs: [this.loss, this.probs], attrs: { B, C } }];
  }

  private backwardOps(B: number): Op[] {
    const C = this.outputDim;
    const ops: Op[] =
      this.spec.loss === 'mean'
        ? [{ kernel: 'mean_backward', inputs: [this.hyper], outputs: [this.dLogits], attrs: { B, C } }]
        : [{ kernel: 'softmax_xent_backward', inputs: [this.probs, this.labels, this.hyper], outputs: [this.dLogits], attrs: { B, C } }];
    for (let i = this.steps.length - 1; i >= 0; i--) {
      const s = this.steps[i]!;
      switch (s.kind) {
        case 'act':
          if (s.dy !== null && s.dx !== null) ops.push({ kernel: `${s.act}_backward`, inputs: [s.y, s.dy], outputs: [s.dx], attrs: { N: B * s.dim } });
          break;
        case 'dense': {
          if (s.act !== 'linear') ops.push({ kernel: `${s.act}_backward`, inputs: [s.y, s.dy], outputs: [s.dy], attrs: { N: B * s.outDim } });
          const W = this.params[s.param]!;
          const b = this.params[s.param + 1]!;
          const outputs = s.dx === null ? [W.g, b.g] : [W.g, b.g, s.dx];
          ops.push({ kernel: 'dense_backward', inputs: [s.x, W.w, s.dy], outputs, attrs: { B, I: s.inDim, O: s.outDim, accumulate: 0 } });
          break;
        }
        case 'conv': {
          if (s.act !== 'linear') ops.push({ kernel: `${s.act}_backward`, inputs: [s.y, s.dy], outputs: [s.dy], attrs: { N: B * s.g.OH * s.g.OW * s.K } });
          const W = this.params[s.param]!;
          const b = this.params[s.param + 1]!;
          const outputs = s.dx === null ? [W.g, b.g] : [W.g, b.g, s.dx];
          ops.push({ kernel: 'conv2d_backward', inputs: [s.x, W.w, s.dy], outputs, attrs: { B, ...s.g, K: s.K, accumulate: 0 } });
          break;
        }
        case 'pool':
          if (s.dy !== null && s.dx !== null) ops.push({ kernel: 'maxpool_backward', inputs: [s.dy, s.argmax], outputs: [s.dx], attrs: { B, ...s.g } });
          break;
        case 'lrn':
          if (s.dy !== null && s.dx !== null)
            ops.push({ kernel: 'lrn_backward', inputs: [s.x, s.y, s.dy, s.scale], outputs: [s.dx], attrs: { N: B * s.n, C: s.C, depthRadius: s.depthRadius, bias: s.bias, alpha: s.alpha, beta: s.beta } });
          break;
        case 'dropout':
          if (s.dy !== null && s.dx !== null) ops.push({ kernel: 'dropout_backward', inputs: [s.dy, s.mask], outputs: [s.dx], attrs: { N: B * s.dim } });
          break;
      }
    }
    return ops;
  }

  /**
   * After the gradients are reduced (or at once, on a single tower): L2 penalty, clipping, the optimizer and the
   * EMA. Every tower runs these on identical inputs, so replicas stay bit-identical (Note [Synchronous update]).
   */
  private updateOps(): Op[] {
    const t = this.requireTraining();
    const ops: Op[] = [{ kernel: 'fill', inputs: [], outputs: [this.regLoss], attrs: { N: 1, value: 0 } }];
    for (const p of this.params) {
      if (p.l2 > 0) {
        ops.push({ kernel: 'l2_loss', inputs: [p.w], outputs: [this.regLoss], attrs: { N: p.numel, lambda: p.l2 } });
        ops.push({ kernel: 'l2_backward', inputs: [p.w], outputs: [p.g], attrs: { N: p.numel, lambda: p.l2 } });
      }
    }
    // The global gradient norm (reported every step, and the clipping threshold's input): one pass over the arena.
    ops.push({ kernel: 'fill', inputs: [], outputs: [this.normSq], attrs: { N: 1, value: 0 } });
    ops.push({ kernel: 'sum_squares', inputs: [this.gradArena], outputs: [this.normSq], attrs: { N: this.paramCount } });
    ops.push({ kernel: '@guard', inputs: [this.normSq], outputs: [] });
    if (t.clipNorm !== undefined)
      ops.push({ kernel: 'clip_by_norm', inputs: [this.normSq], outputs: [this.gradArena], attrs: { N: this.paramCount, clipNorm: t.clipNorm } });
    for (const p of this.params) ops.push(updateOp(t.optimizer, p.numel, p.w, p.g, p.slots, this.hyper));
    if (t.emaDecay !== undefined)
      for (const p of this.params) ops.push({ kernel: 'ema_update', inputs: [p.w], outputs: [p.ema!], attrs: { N: p.numel, decay: t.emaDecay } });
    return ops;
  }

  private requireTraining(): ResolvedTrainingOptions {
    if (!this.training) throw new Error(`tower on ${this.backend.name} was created without training options; pass { training: { optimizer } }`);
    return this.training;
  }

  private program(key: string, build: () => Op[]): number {
    let p = this.programs.get(key);
    if (p === undefined) {
      p = this.backend.compile(build());
      this.programs.set(key, p);
    }
    return p;
  }

  // ---- running ------------------------------------------------------------------------------------------------

  private checkBatch(B: number): void {
    if (this.disposed) throw new Error(`tower on ${this.backend.name} is disposed`);
    if (!Number.isInteger(B) || B < 1 || B > this.maxBatch)
      throw new RangeError(`batch of ${B} on ${this.backend.name}: expected 1..${this.maxBatch} examples (the tower's maxBatch)`);
  }

  /** Writes the batch's inputs (indices, or the examples themselves) and returns its size. */
  /** Checks a batch and lists what must be written for it; nothing is written here (bad input changes nothing). */
  private stageWrites(src: BatchSource): { B: number; writes: Array<[number, Float32Array | Int32Array]> } {
    if (src.kind === 'indices') {
      const B = src.indices.length;
      this.checkBatch(B);
      return { B, writes: [[this.idx, src.indices]] };
    }
    const B = src.labels.length;
    this.checkBatch(B);
    if (src.x.length !== B * this.inputDim)
      throw new RangeError(`batch input on ${this.backend.name}: x has ${src.x.length} values, expected ${B} x ${this.inputDim} = ${B * this.inputDim}`);
    for (let i = 0; i < B; i++) {
      const l = src.labels[i]!;
      if (this.spec.loss === 'softmaxCrossEntropy' && !(l >= 0 && l < this.outputDim))
        throw new RangeError(`batch labels on ${this.backend.name}: label ${l} at row ${i} is outside [0, ${this.outputDim})`);
    }
    return { B, writes: [[this.x, src.x], [this.labels, src.labels]] };
  }

  private setHyper(lr: number, t: number, scale: number): Float32Array {
    this.hyperHost[0] = lr;
    this.hyperHost[1] = t;
    this.hyperHost[2] = scale;
    return this.hyperHost;
  }

  private writeHyper(lr: number, t: number, scale: number): void {
    this.backend.copyIn(this.hyper, this.setHyper(lr, t, scale));
  }

  /**
   * One whole step in one native call: forward, backward, (all-reduce with the other towers), update.
   * Alone, the shard is the whole batch (gradScale 1/B). In a collective, `gradScale` is 1 / global batch and
   * the reduced gradient is the sum of the towers' (Note [Shard weighting] in src/actors/split.ts).
   * A non-finite reduced gradient norm skips the update on every tower alike (Note [Non-finite guard]).
   */
  async trainStep(
    src: BatchSource,
    lr: number,
    t: number,
    opts: { gradScale?: number; collective?: CollectiveSlot; fault?: StepFault } = {},
  ): Promise<StepResult> {
    const { B, writes } = this.stageWrites(src);
    writes.push([this.hyper, this.setHyper(lr, t, opts.gradScale ?? 1 / B)]);
    const program = this.stepProgram(B, src.kind === 'indices' ? src.dataset : undefined, opts.collective, opts.fault);
    this.lastStepProgram = program;
    const reads = [this.loss, this.regLoss, this.normSq];
    let r: { values: ArrayLike<number>; marks: ArrayLike<number>; startMs: number; waitMs: number; guardTripped: boolean };
    if (this.backend.runWith) {
      // Note [One hand-off per step]: inputs, hyper-parameters, the program and the scalars the coordinator
      // needs travel in a single call to the device thread and back (no blocking copies around the step).
      r = await this.backend.runWith(program, writes, reads);
    } else {
      for (const [h, v] of writes) this.backend.copyIn(h, v);
      await this.backend.run(program);
      const st = this.backend.status?.(program);
      r = { values: reads.map((h) => this.backend.copyOut(h)[0]!), marks: st?.marks ?? [], startMs: st?.startMs ?? 0, waitMs: 0, guardTripped: st?.guardTripped ?? false };
    }
    const timings = stepTimings(r.marks, r.startMs);
    return { timings, skipped: r.guardTripped, loss: r.values[0]!, regLoss: r.values[1]!, gradNorm: Math.sqrt(r.values[2]!), reduceWaitMs: r.waitMs };
  }

  /** The program of the step running now (or last), for the watchdog's "which phase is it in?". */
  lastStepProgram: number | undefined;

  /** Which phase the current step is in, from its '@mark' progress; undefined when no step runs. */
  currentPhase(): (typeof STEP_PHASES)[number] | undefined {
    if (this.lastStepProgram === undefined) return undefined;
    const st = this.backend.status?.(this.lastStepProgram);
    return st ? phaseOf(st) : undefined;
  }

  /**
   * The handles a coordinator needs to launch this tower's step for batch size B itself (the fast path of
   * Note [One hand-off per step]): the compiled program, the buffers to write (indices, hyper, crop params)
   * and the scalars to read back (data loss, L2 loss, squared gradient norm).
   */
  stepLaunch(B: number, dataset: DeviceDataset, collective?: CollectiveSlot): StepLaunch {
    this.checkBatch(B);
    const program = this.stepProgram(B, dataset, collective, undefined);
    return {
      program,
      indices: this.idx,
      hyper: this.hyper,
      ...(dataset.transform?.mode === 'random' && this.cropParams !== undefined ? { crop: this.cropParams } : {}),
      reads: [this.loss, this.regLoss, this.normSq],
    };
  }


  // Note [Non-finite guard]: each tower records Σg² per tensor of its own gradient before the all-reduce
  // (P tiny reductions, one pass over the gradients, no host copy), and every tower checks the reduced norm
  // with a '@guard' op before clipping and updating. All towers see the same reduced norm, so they all skip
  // or all apply; the per-tensor local sums are read only after a trip, to name the tower and the tensor.
  private stepProgram(B: number, ds: DeviceDataset | undefined, c: CollectiveSlot | undefined, fault: StepFault | undefined): number {
    const key = `step:${B}:${ds ? ds.images : 'direct'}:${c ? `${c.comm}/${c.rank}` : 'alone'}:${fault ? JSON.stringify(fault) : ''}`;
    const mark: Op = { kernel: '@mark', inputs: [], outputs: [] };
    const stall = (phase: string): Op[] =>
      fault?.stallMs?.phase === phase ? [{ kernel: '@sleep', inputs: [], outputs: [], attrs: { ms: fault.stallMs.ms } }] : [];
    return this.program(key, () => [
      ...this.inputOps(B, ds),
      mark,
      ...stall('forward'),
      ...this.forwardOps(B, false, true),
      ...this.lossOps(B),
      mark,
      ...stall('backward'),
      ...this.backwardOps(B),
      ...(fault?.nanAt !== undefined ? [{ kernel: '@poison', inputs: [], outputs: [this.gradArena], attrs: { index: fault.nanAt } }] : []),
      ...this.params.flatMap((p): Op[] => [
        { kernel: 'fill', inputs: [], outputs: [p.localNormSq], attrs: { N: 1, value: 0 } },
        { kernel: 'sum_squares', inputs: [p.g], outputs: [p.localNormSq], attrs: { N: p.numel } },
      ]),
      mark,
      ...stall('reduce'),
      ...(c ? [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm: c.comm, rank: c.rank } }] : []),
      mark,
      ...stall('update'),
      ...this.updateOps(),
      mark,
    ]);
  }

  /**
   * 64-bit hashes of the exact bits of all weights and of each tensor (Note [Replica hash]), computed on the
   * device: only 8 bytes per tensor come back. Towers in lock-step have equal hashes.
   */
  async replicaHashes(): Promise<{ total: string; tensors: Array<[string, string]> }> {
    if (this.hashBufs === undefined) {
      this.hashBufs = [this.weightArena, ...this.params.map((p) => p.w)].map(() => {
        const h = this.backend.alloc(2, 'i32');
        this.owned.push(h);
        return h;
      });
    }
    const bufs = this.hashBufs;
    const src = [{ h: this.weightArena, n: this.paramCount }, ...this.params.map((p) => ({ h: p.w, n: p.numel }))];
    await this.backend.run(this.program('hash', () => src.map((x, i) => ({ kernel: 'hash_bits', inputs: [x.h], outputs: [bufs[i]!], attrs: { N: x.n } }))));
    const hex = (h: number) => {
      const v = this.backend.copyOut(h);
      return ((BigInt(v[1]! >>> 0) << 32n) | BigInt(v[0]! >>> 0)).toString(16).padStart(16, '0');
    };
    return { total: hex(bufs[0]!), tensors: this.params.map((p, i) => [p.name, hex(bufs[i + 1]!)] as [string, string]) };
  }

  private hashBufs: number[] | undefined;

  /** After a guard trip: the first tensor (in parameter order) whose local gradient was not finite, if any. */
  firstNonFiniteLocal(): string | undefined {
    for (const p of this.params) if (!Number.isFinite(this.backend.copyOut(p.localNormSq)[0]!)) return p.name;
    return undefined;
  }

  /** Runs a collective over the weight arena (the start-up broadcast from tower 0), then restarts the EMA. */
  async runWeightCollective(slot: CollectiveSlot): Promise<void> {
    await this.backend.runOps([
      { kernel: '@collective', inputs: [], outputs: [], attrs: { comm: slot.comm, rank: slot.rank } },
      ...this.params.filter((p) => p.ema !== undefined).map((p) => ({ kernel: 'copy', inputs: [p.w], outputs: [p.ema!], attrs: { N: p.numel } })),
    ]);
  }

  /** The data loss of the last forward pass (already weighted by its shard scale). */
  dataLoss(): number {
    return this.backend.copyOut(this.loss)[0]!;
  }

  /** Loss and accuracy over a device dataset, in batches of at most maxBatch (with the EMA weights if asked). */
  async evaluate(dataset: DeviceDataset, opts: { useEma?: boolean } = {}): Promise<{ loss: number; accuracy: number; count: number }> {
    const useEma = opts.useEma ?? false;
    if (useEma && this.params[0]?.ema === undefined) throw new Error('evaluate({ useEma: true }) needs training.emaDecay set');
    let lossSum = 0;
    let correct = 0;
    for (let start = 0; start < dataset.count; start += this.maxBatch) {
      const B = Math.min(this.maxBatch, dataset.count - start);
      const idx = new Int32Array(B);
      for (let i = 0; i < B; i++) idx[i] = start + i;
      this.backend.copyIn(this.idx, idx);
      this.writeHyper(0, 0, 1);
      const key = `eval:${B}:${dataset.images}:${useEma ? 1 : 0}`;
      await this.backend.run(
        this.program(key, () => [
          ...this.inputOps(B, dataset),
          ...this.forwardOps(B, useEma),
          ...this.lossOps(B),
          { kernel: 'accuracy_count', inputs: [this.logits, this.labels], outputs: [this.correct], attrs: { B, C: this.outputDim } },
        ]),
      );
      lossSum += this.backend.copyOut(this.loss)[0]!;
      correct += this.backend.copyOut(this.correct)[0]!;
    }
    return { loss: lossSum / dataset.count, accuracy: correct / dataset.count, count: dataset.count };
  }

  /** Copies of the weights, by parameter name (for checkpoints and tests; never on the training hot path). */
  readWeights(which: 'w' | 'g' | 'ema' = 'w'): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const p of this.params) {
      const h = which === 'w' ? p.w : which === 'g' ? p.g : p.ema;
      if (h === undefined) throw new Error(`no '${which}' buffers on this tower`);
      out.set(p.name, this.backend.copyOut(h) as Float32Array);
    }
    return out;
  }

  /**
   * Everything a resumed run needs, by name: weights ('<param>'), optimizer slots ('optimizer/<param>/<k>') and
   * the EMA ('ema/<param>'). Copies for checkpoints, never on the hot path.
   */
  readState(): Array<{ name: string; shape: number[]; data: Float32Array }> {
    const out: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
    for (const p of this.params) {
      out.push({ name: p.name, shape: p.shape, data: this.backend.copyOut(p.w) as Float32Array });
      p.slots.forEach((h, k) => out.push({ name: `optimizer/${p.name}/${k}`, shape: p.shape, data: this.backend.copyOut(h) as Float32Array }));
      if (p.ema !== undefined) out.push({ name: `ema/${p.name}`, shape: p.shape, data: this.backend.copyOut(p.ema) as Float32Array });
    }
    return out;
  }

  /** Restores readState()'s tensors. Checks every name and size first: a mismatched state changes nothing. */
  writeState(tensors: Map<string, ArrayLike<number>>): void {
    const plan: Array<[number, ArrayLike<number>]> = [];
    const want = (name: string, h: number, p: Param) => {
      const v = tensors.get(name);
      if (!v) throw new Error(`checkpoint has no tensor '${name}' that model '${this.spec.name}' needs (is it from another model or optimizer?)`);
      if (v.length !== p.numel) throw new RangeError(`checkpoint tensor '${name}' has ${v.length} values; model '${this.spec.name}' expects ${p.numel} (shape ${p.shape.join('x')})`);
      plan.push([h, v]);
    };
    for (const p of this.params) {
      want(p.name, p.w, p);
      p.slots.forEach((h, k) => want(`optimizer/${p.name}/${k}`, h, p));
      if (p.ema !== undefined) want(`ema/${p.name}`, p.ema, p);
    }
    for (const [h, v] of plan) this.backend.copyIn(h, v);
  }

  writeWeights(values: Map<string, ArrayLike<number>>): void {
    for (const p of this.params) {
      const v = values.get(p.name);
      if (!v) throw new Error(`writeWeights: no values for parameter '${p.name}'`);
      if (v.length !== p.numel) throw new RangeError(`writeWeights: '${p.name}' has ${p.numel} values (shape ${p.shape.join('x')}), given ${v.length}`);
    }
    for (const p of this.params) this.backend.copyIn(p.w, values.get(p.name)!);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.programs.values()) this.backend.releaseProgram(p);
    for (const h of [...this.owned].reverse()) this.backend.free(h);
    this.programs.clear();
  }
}
