// One model replica on one device: its weights, gradients, optimizer state and the compiled step programs.
import type { Backend, Op } from '../backend/backend.js';
import { initTensor } from './init.js';
import { parseModelSpec, type ModelSpec, type ResolvedModelSpec } from './spec.js';
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

// Per-layer plan: what forward and backward do, in terms of activation buffer handles.
type Step =
  | { kind: 'dense'; param: number; inDim: number; outDim: number; x: number; y: number; dx: number | null; dy: number; act: string }
  | { kind: 'act'; act: string; dim: number; y: number; dy: number };

const HYPER_SIZE = 8;

export class Tower {
  readonly spec: ResolvedModelSpec;
  readonly params: Param[] = [];
  readonly inputDim: number;
  readonly outputDim: number;
  readonly training?: ResolvedTrainingOptions;
  readonly maxBatch: number;

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

    this.inputDim = this.spec.input.shape.reduce((a, b) => a * b, 1);
    // Parameter sizes first, so the arenas can be allocated before the views.
    const sizes: number[] = [];
    {
      let d = this.inputDim;
      for (const layer of this.spec.layers)
        if (layer.type === 'dense') {
          sizes.push(d * layer.units, layer.units);
          d = layer.units;
        }
    }
    this.paramCount = sizes.reduce((a, b) => a + b, 0);
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

    // Forward plan: activations are computed in place where the kernel allows, so each layer owns one output
    // buffer and one gradient buffer. The network input needs no gradient (dx of the first dense is skipped).
    let cur = this.x;
    let curGrad: number | null = null;
    let dim = this.inputDim;
    this.spec.layers.forEach((layer, li) => {
      if (layer.type === 'flatten') return;  // row-major (B, ...) is already (B, prod)
      if (layer.type === 'dense') {
        const name = layer.name ?? `dense_${li}`;
        const pw = this.addParam(`${name}/kernel`, [dim, layer.units], layer.l2, dim, layer.units, buf);
        this.addParam(`${name}/bias`, [layer.units], 0, dim, layer.units, buf);
        const y = buf(B * layer.units);
        const dy = buf(B * layer.units);
        this.steps.push({ kind: 'dense', param: pw, inDim: dim, outDim: layer.units, x: cur, y, dx: curGrad, dy, act: layer.activation });
        cur = y;
        curGrad = dy;
        dim = layer.units;
      } else {
        if (curGrad === null) {
          // An activation straight on the input: give it its own buffers so the input stays intact.
          const y = buf(B * dim);
          const dy = buf(B * dim);
          this.steps.push({ kind: 'dense', param: -1, inDim: dim, outDim: dim, x: cur, y, dx: null, dy, act: 'copy' });
          cur = y;
          curGrad = dy;
        }
        this.steps.push({ kind: 'act', act: layer.type, dim, y: cur, dy: curGrad });
      }
    });
    if (curGrad === null) throw new Error(`model '${this.spec.name}' has no dense layer: nothing to train`);
    this.outputDim = dim;
    this.logits = cur;
    this.dLogits = curGrad;
    this.probs = buf(B * dim);
  }

  private addParam(name: string, shape: number[], l2: number, fanIn: number, fanOut: number, buf: (n: number) => number): number {
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
    const layerSpecs = this.spec.layers.filter((l) => l.type === 'dense');
    this.params.forEach((p, i) => {
      const layer = layerSpecs[Math.floor(i / 2)]!;
      if (layer.type !== 'dense') return;
      const init = i % 2 === 0 ? layer.kernelInit : layer.biasInit;
      const values = initTensor(init, p.numel, p.fanIn, p.fanOut, root.fork(i));
      this.backend.copyIn(p.w, values);
      if (p.ema !== undefined) this.backend.copyIn(p.ema, values);
    });
  }

  /** Uploads a labelled u8 dataset into device memory once; steps then gather rows by index natively. */
  uploadDataset(images: Uint8Array, labels: Uint8Array, count: number, scale = 1 / 255): DeviceDataset {
    const dim = images.length / count;
    if (!Number.isInteger(dim) || dim !== this.inputDim)
      throw new RangeError(`uploadDataset: ${images.length} image bytes over ${count} examples is ${dim} per example; model '${this.spec.name}' expects ${this.inputDim}`);
    if (labels.length !== count) throw new RangeError(`uploadDataset: ${labels.length} labels for ${count} examples`);
    const img = this.backend.alloc(images.length, 'u8');
    const lab = this.backend.alloc(count, 'u8');
    this.owned.push(img, lab);
    this.backend.copyIn(img, images);
    this.backend.copyIn(lab, labels);
    return { images: img, labels: lab, count, dim, scale };
  }

  // ---- op lists ---------------------------------------------------------------------------------------------

  private inputOps(B: number, dataset?: DeviceDataset): Op[] {
    if (!dataset) return [];
    const D = this.inputDim;
    return [
      { kernel: 'gather_rows_u8', inputs: [dataset.images, this.idx], outputs: [this.x], attrs: { B, D, R: dataset.count, scale: dataset.scale } },
      { kernel: 'gather_labels_u8', inputs: [dataset.labels, this.idx], outputs: [this.labels], attrs: { B, R: dataset.count } },
    ];
  }

  private forwardOps(B: number, useEma: boolean): Op[] {
    const ops: Op[] = [];
    for (const s of this.steps) {
      if (s.kind === 'dense') {
        if (s.param < 0) {
          ops.push({ kernel: 'copy', inputs: [s.x], outputs: [s.y], attrs: { N: B * s.inDim } });
          continue;
        }
        const W = this.params[s.param]!;
        const b = this.params[s.param + 1]!;
        const w = useEma ? W.ema! : W.w;
        const bias = useEma ? b.ema! : b.w;
        ops.push({ kernel: 'dense_forward', inputs: [s.x, w, bias], outputs: [s.y], attrs: { B, I: s.inDim, O: s.outDim } });
        if (s.act !== 'linear') ops.push({ kernel: `${s.act}_forward`, inputs: [s.y], outputs: [s.y], attrs: { N: B * s.outDim } });
      } else {
        ops.push({ kernel: `${s.act}_forward`, inputs: [s.y], outputs: [s.y], attrs: { N: B * s.dim } });
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
      if (s.kind === 'act') {
        ops.push({ kernel: `${s.act}_backward`, inputs: [s.y, s.dy], outputs: [s.dy], attrs: { N: B * s.dim } });
        continue;
      }
      if (s.param < 0) continue;  // the input copy needs no gradient
      if (s.act !== 'linear') ops.push({ kernel: `${s.act}_backward`, inputs: [s.y, s.dy], outputs: [s.dy], attrs: { N: B * s.outDim } });
      const W = this.params[s.param]!;
      const b = this.params[s.param + 1]!;
      const outputs = s.dx === null ? [W.g, b.g] : [W.g, b.g, s.dx];
      ops.push({ kernel: 'dense_backward', inputs: [s.x, W.w, s.dy], outputs, attrs: { B, I: s.inDim, O: s.outDim, accumulate: 0 } });
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

  private stage(src: BatchSource): number {
    const { B, writes } = this.stageWrites(src);
    for (const [h, v] of writes) this.backend.copyIn(h, v);
    return B;
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
    const m = r.marks;
    const timings =
      m.length >= 5
        ? { startMs: r.startMs, input: m[0]!, forward: m[1]! - m[0]!, backward: m[2]! - m[1]!, reduce: m[3]! - m[2]!, update: m[4]! - m[3]!, total: m[4]! }
        : { startMs: 0, input: 0, forward: 0, backward: 0, reduce: 0, update: 0, total: 0 };
    return { timings, skipped: r.guardTripped, loss: r.values[0]!, regLoss: r.values[1]!, gradNorm: Math.sqrt(r.values[2]!), reduceWaitMs: r.waitMs };
  }

  /** The program of the step running now (or last), for the watchdog's "which phase is it in?". */
  lastStepProgram: number | undefined;

  /** Which phase the current step is in, from its '@mark' progress; undefined when no step runs. */
  currentPhase(): (typeof STEP_PHASES)[number] | undefined {
    if (this.lastStepProgram === undefined) return undefined;
    const st = this.backend.status?.(this.lastStepProgram);
    if (!st || st.currentOp < 0) return undefined;
    const done = Array.from(st.marks).filter((x) => x >= 0).length;
    return STEP_PHASES[Math.min(done, STEP_PHASES.length - 1)];
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
      ...this.forwardOps(B, false),
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

  /** The global norm of the (reduced, regularised) gradient at the last update, before clipping. */
  gradientNorm(): number {
    return Math.sqrt(this.backend.copyOut(this.normSq)[0]!);
  }

  /** The L2 penalty computed by the last update (on the weights before that update). */
  regularizationLoss(): number {
    return this.backend.copyOut(this.regLoss)[0]!;
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
