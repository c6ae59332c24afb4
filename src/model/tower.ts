// One model replica on one device: its buffers and compiled programs; the jobs are in their own files (memory.ts,
// network.ts and layers/, passes.ts, step-program.ts, inputs.ts, state.ts, diagnostics.ts) and Tower delegates.
import type { Backend, DeviceFault, Op } from '../backend/backend.js';
import { HYPER_SIZE, hyperBlock } from '../native/hyper.js';
import { Rng } from '../util/rng.js';
import { initTensor } from './init.js';
import { parseModelSpec, type ModelSpec, type ResolvedModelSpec } from './spec.js';
import { parseTrainingOptions, slotCount, type ResolvedTrainingOptions, type TrainingOptions } from './optimizer.js';
import { TowerMemory, type Param } from './memory.js';
import { buildNetwork, type Network } from './network.js';
import { backwardOps, forwardOps, localNormOps, loneLocalNormOps, lossOps } from './passes.js';
import { gradientOps, stepOps, stepTimings, type CollectiveSlot, type StepLaunch, type StepResult, type STEP_PHASES } from './step-program.js';
import { TowerInputs, type BatchSource, type BatchWrites, type DeviceDataset, type ImageTransform } from './inputs.js';
import { TowerDiagnostics } from './diagnostics.js';
import { deviceFault, type StepFault } from './fault.js';
import * as state from './state.js';
import { factorHandles, overlayPieces, planFactors, planFusedReduce, readShardState, refreshFormedOps, sharedWeightWrites, shardSlotWrites, type Factors, type FusedReduce, type ShardPlace } from './sharded-update.js';

export type { Param } from './memory.js';
export type { BatchSource, DeviceDataset, DeviceImageTransform, ImageTransform } from './inputs.js';
export { STEP_PHASES, phaseOf, stepTimings, type CollectiveSlot, type StepLaunch, type StepResult, type StepTimings } from './step-program.js';
export { FaultPoint, type FaultPointName, type StepFault } from './fault.js';

export interface TowerOptions {
  /** Largest batch this tower will ever run (activation buffers are sized for it). */
  maxBatch: number;
  /** Training settings; omit for an evaluation-only tower. */
  training?: TrainingOptions;
  /** Build for the sharded update as tower `rank` of `towers` (Note [Sharded update]); training towers only. */
  shard?: ShardPlace;
}

export class Tower {
  readonly spec: ResolvedModelSpec;
  readonly training?: ResolvedTrainingOptions;
  readonly maxBatch: number;
  /** The layers, parameters and buffers of this tower (see network.ts). */
  readonly network: Network;
  readonly params: Param[];
  readonly inputDim: number;
  readonly outputDim: number;
  /** The per-example input shape ([D], or [H, W, C] for images). */
  readonly inputShape: number[];
  /** All weights in one flat buffer, and all gradients in another: each parameter is a view into them, so an
   * all-reduce or a broadcast is one collective over one buffer. */
  readonly weightArena: number;
  readonly gradArena: number;
  readonly paramCount: number;

  private readonly mem: TowerMemory;
  private readonly inputs: TowerInputs;
  private readonly diag: TowerDiagnostics;
  private readonly programs = new Map<string, number>();
  private disposed = false;
  /** trainStep's host hyper block, reused: runWith copies its writes before it returns (Note [One hand-off per step]). */
  private readonly hyperHost = new Float32Array(HYPER_SIZE);
  /** The last launch built, with what it was built for: a loop of steps builds it once (no key string per step). */
  private lastLaunch: { B: number; ds: DeviceDataset | undefined; c: CollectiveSlot | undefined; variant: string; launch: StepLaunch } | undefined;
  /** The fused reduce of the group joined last (Note [Shared gradients]). */
  private fused: { key: string; plan: FusedReduce } | undefined;
  /** A sharded tower's factors on a backend that shares memory (Note [Shared gradients]). */
  private readonly factors: Factors | undefined;

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
    this.mem = new TowerMemory(backend);
    try {
      this.network = buildNetwork(this.spec, this.mem, this.maxBatch, {
        slots: this.training ? slotCount(this.training.optimizer) : 0,
        ema: this.training?.emaDecay !== undefined,
        ...(opts.shard && this.training ? { shard: opts.shard } : {}),
      });
    } catch (e) {
      this.mem.free();
      throw e;
    }
    const n = this.network;
    ({ params: this.params, inputDim: this.inputDim, outputDim: this.outputDim, inputShape: this.inputShape } = n);
    ({ weightArena: this.weightArena, gradArena: this.gradArena, paramCount: this.paramCount } = n);
    this.inputs = new TowerInputs(this.mem, n, this.maxBatch);
    this.diag = new TowerDiagnostics(this.mem, n, (key, build) => this.program(key, build));
    this.factors = n.shard && backend.share ? planFactors(this.mem, n.params, backwardOps(n, 1), this.maxBatch) : undefined;
  }

  /** Seeded initialisation: the same seed gives the same weights bit for bit, on any backend. */
  initWeights(seed: number): void {
    const root = new Rng(seed);
    this.params.forEach((p, i) => {
      const values = initTensor(p.init, p.numel, p.fanIn, p.fanOut, root.fork(i));
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
    return this.inputs.upload(images, labels, count, scale, transform);
  }

  /**
   * The [dy, dx, flip] of each example of the next batch on a 'random' crop dataset (3 ints per example; see
   * src/data/cifar10.ts cropParams). A few hundred bytes per step; the images never leave the device.
   */
  setCropParams(params: Int32Array): void {
    this.inputs.setCropParams(params);
  }

  private requireTraining(): ResolvedTrainingOptions {
    if (!this.training) throw new Error(`tower on ${this.backend.name} was created without training options; pass { training: { optimizer } }`);
    return this.training;
  }

  /** The compiled program of `key`, built and compiled on first use; released by dispose(). */
  private program(key: string, build: () => Op[]): number {
    let p = this.programs.get(key);
    if (p === undefined) {
      p = this.backend.compile(build());
      this.programs.set(key, p);
    }
    return p;
  }

  private checkBatch(B: number): void {
    if (this.disposed) throw new Error(`tower on ${this.backend.name} is disposed`);
    if (!Number.isInteger(B) || B < 1 || B > this.maxBatch)
      throw new RangeError(`batch of ${B} on ${this.backend.name}: expected 1..${this.maxBatch} examples (the tower's maxBatch)`);
  }

  /**
   * The handles a coordinator needs to launch this tower's step for batch size B itself (the fast path of
   * Note [One hand-off per step]): the compiled program, the buffers to write (indices, hyper, crop params)
   * and the scalars to read back (data loss, L2 loss, squared gradient norm).
   */
  stepLaunch(B: number, dataset: DeviceDataset, collective?: CollectiveSlot): StepLaunch {
    this.checkBatch(B);
    return this.launch(B, dataset, collective);
  }

  /** The asynchronous mode's launch: the step program without the all-reduce and the update (gradientOps). */
  gradientLaunch(B: number, dataset: DeviceDataset): StepLaunch {
    this.checkBatch(B);
    return this.launch(B, dataset, undefined, 'gradient');
  }

  private launch(B: number, ds: DeviceDataset | undefined, c: CollectiveSlot | undefined, variant: 'step' | 'gradient' = 'step'): StepLaunch {
    const last = this.lastLaunch;
    if (last && last.B === B && last.ds === ds && last.c === c && last.variant === variant) return last.launch;
    const launch = this.buildLaunch(B, ds, c, variant);
    this.lastLaunch = { B, ds, c, variant, launch };
    return launch;
  }

  private buildLaunch(B: number, ds: DeviceDataset | undefined, c: CollectiveSlot | undefined, variant: 'step' | 'gradient'): StepLaunch {
    const t = this.requireTraining();
    const key = `${variant}:${B}:${ds ? ds.images : 'direct'}:${c ? `${c.comm}/${c.rank}` : 'alone'}`;
    const { idx, hyper, loss, regLoss, normSq } = this.network.buffers;
    const crop = this.inputs.crop;
    const input = () => this.inputs.ops(B, ds);
    const fused = () => (c?.shard?.gradients ? this.fusedReduce(c.shard.gradients, c.shard.factors) : undefined);
    return {
      program: this.program(key, () => (variant === 'gradient' ? gradientOps(this.network, B, input()) : stepOps(this.network, B, input(), c, t, fused()))),
      indices: idx,
      hyper,
      ...(ds?.transform?.mode === 'random' && crop !== undefined ? { crop } : {}),
      reads: [loss, regLoss, normSq],
    };
  }

  /**
   * One whole step in one native call: forward, backward, (all-reduce with the other towers), update; the
   * launch of stepLaunch, run with runWith like the coordinator's. Alone, the shard is the whole batch
   * (gradScale 1/B). In a collective, `gradScale` is 1 / global batch and the reduced gradient is the sum of the
   * towers' (Note [Shard weighting] in src/coordinator/shard.ts). A non-finite reduced gradient norm skips the update
   * on every tower alike (Note [Non-finite guard]). `fault` arms one fault for this step (Note [Fault points]).
   */
  async trainStep(
    src: BatchSource,
    lr: number,
    t: number,
    opts: { gradScale?: number; collective?: CollectiveSlot; fault?: StepFault } = {},
  ): Promise<StepResult> {
    const { B, writes } = this.inputs.writes(src, (n) => this.checkBatch(n));
    const fault = opts.fault ? deviceFault(opts.fault) : undefined;
    const launch = this.launch(B, src.kind === 'indices' ? src.dataset : undefined, opts.collective);
    writes.push([launch.hyper, hyperBlock(lr, t, opts.gradScale ?? 1 / B, this.hyperHost)]);
    this.diag.lastStepProgram = launch.program;
    const r = await this.execute(launch.program, writes, launch.reads, fault);
    const timings = stepTimings(r.marks, r.startMs);
    return { timings, skipped: r.guardTripped, loss: r.values[0]!, regLoss: r.values[1]!, gradNorm: Math.sqrt(r.values[2]!), reduceWaitMs: r.waitMs };
  }

  // Note [One hand-off per step]: inputs, hyper-parameters, the program and the scalars the coordinator needs
  // travel in a single call to the device thread and back (no blocking copies around the step). A backend without
  // runWith (the float64 reference) gets the same writes, run (with the same fault) and reads one by one.
  private async execute(program: number, writes: BatchWrites, reads: number[], fault: DeviceFault | undefined) {
    const b = this.backend;
    if (b.runWith) return b.runWith(program, writes, reads, fault);
    for (const [h, v] of writes) b.copyIn(h, v);
    await b.run(program, fault);
    const st = b.status?.(program);
    const values = Float64Array.from(reads, (h) => b.copyOut(h)[0]!);
    return { values, marks: st?.marks ?? new Float64Array(0), startMs: st?.startMs ?? 0, waitMs: 0, guardTripped: st?.guardTripped ?? false };
  }

  /** The fused reduce over these gradient arenas (Note [Shared gradients]), planned once per group. */
  private fusedReduce(gradArenas: number[], factors: number[][] | undefined): FusedReduce {
    const key = `${gradArenas.join(',')}/${factors?.map((l) => l.join(',')).join(';') ?? ''}`;
    const own = factors && this.factors ? { own: this.factors, all: factors } : undefined;
    if (this.fused?.key !== key) this.fused = { key, plan: planFusedReduce(this.mem, this.network.shard!, this.gradArena, gradArenas, own) };
    return this.fused.plan;
  }

  /** A sharded tower's factor handles for its peer (Note [Shared gradients]); undefined on backends that cannot share. */
  factorHandles(): number[] | undefined {
    return this.factors ? factorHandles(this.factors) : undefined;
  }

  /**
   * With the fused reduce the step computes no local norms, and a lone step none of the parameters without an L2 term:
   * after a guard trip, compute them from the intact gradient (the weights it forms from factors: from this tower's
   * own first).
   */
  async refreshLocalNorms(): Promise<void> {
    const f = this.fused;
    if (f) await this.backend.run(this.program(`localNorms:${f.key}`, () => [...refreshFormedOps(f.plan), ...localNormOps(this.network)]));
    // A lone step left the norms of parameters without an L2 term to now (Note [Lone tower's local norms]).
    else if (this.lastLaunch && this.lastLaunch.c === undefined && this.network.params.some((p) => p.l2 === 0))
      await this.backend.run(this.program('localNorms:lone', () => loneLocalNormOps(this.network)));
  }

  /** Which phase the current step is in, from its '@mark' progress; undefined when no step runs. */
  currentPhase(): (typeof STEP_PHASES)[number] | undefined {
    return this.diag.currentPhase();
  }

  /**
   * After a guard trip and refreshLocalNorms: the first tensor (in parameter order) whose local gradient was not
   * finite, if any.
   */
  firstNonFiniteLocal(): string | undefined {
    return this.diag.firstNonFiniteLocal();
  }

  /** 64-bit hashes of the exact bits of all weights and of each tensor (Note [Replica hash]). */
  replicaHashes(): Promise<{ total: string; tensors: Array<[string, string]> }> {
    return this.diag.replicaHashes();
  }

  /**
   * Runs a collective over the weight arena (the start-up broadcast from tower 0), then restarts the EMA (with shared
   * weights, of this tower's own pieces: Note [Shared weights]).
   */
  async runWeightCollective(slot: CollectiveSlot): Promise<void> {
    const sh = this.network.shard;
    const own: Array<{ w: number; ema?: number; numel: number }> = sh?.shared ? sh.pieces : this.params;
    await this.backend.runOps([
      { kernel: '@collective', inputs: [], outputs: [], attrs: { comm: slot.comm, rank: slot.rank } },
      ...own.filter((p) => p.ema !== undefined).map((p) => ({ kernel: 'copy', inputs: [p.w], outputs: [p.ema!], attrs: { N: p.numel } })),
    ]);
  }

  /** The data loss of the last forward pass (already weighted by its shard scale). */
  dataLoss(): number {
    return this.backend.copyOut(this.network.buffers.loss)[0]!;
  }

  /** Loss and accuracy over a device dataset, in batches of at most maxBatch (with the EMA weights if asked). */
  async evaluate(dataset: DeviceDataset, opts: { useEma?: boolean } = {}): Promise<{ loss: number; accuracy: number; count: number }> {
    const useEma = opts.useEma ?? false;
    if (useEma && this.params[0]?.ema === undefined) throw new Error('evaluate({ useEma: true }) needs training.emaDecay set');
    const { idx, hyper, loss, logits, labels, correct } = this.network.buffers;
    let lossSum = 0;
    let right = 0;
    for (let start = 0; start < dataset.count; start += this.maxBatch) {
      const B = Math.min(this.maxBatch, dataset.count - start);
      this.backend.copyIn(idx, Int32Array.from({ length: B }, (_, i) => start + i));
      this.backend.copyIn(hyper, hyperBlock(0, 0, 1));
      await this.backend.run(
        this.program(`eval:${B}:${dataset.images}:${useEma ? 1 : 0}`, () => [
          ...this.inputs.ops(B, dataset),
          ...forwardOps(this.network, B, { train: false, useEma }),
          ...lossOps(this.network, B),
          // accuracy_count: logits (B, C), labels (B) -> correct (1)
          { kernel: 'accuracy_count', inputs: [logits, labels], outputs: [correct], attrs: { B, C: this.outputDim } },
        ]),
      );
      lossSum += this.backend.copyOut(loss)[0]!;
      right += this.backend.copyOut(correct)[0]!;
    }
    return { loss: lossSum / dataset.count, accuracy: right / dataset.count, count: dataset.count };
  }

  /** Copies of the weights, gradients or EMA by parameter name (for checkpoints and tests; never on the hot path). */
  readWeights(which: 'w' | 'g' | 'ema' = 'w'): Map<string, Float32Array> {
    const out = state.readWeights(this.backend, this.params, which);
    if (which === 'g' && this.fused) overlayPieces(this.backend, this.fused.plan.pieces, out); // Note [Shared gradients]
    return out;
  }

  /**
   * Everything a resumed run needs, by name: weights ('<param>'), optimizer slots ('optimizer/<param>/<k>') and
   * the EMA ('ema/<param>'). Copies for checkpoints, never on the hot path.
   */
  readState(): state.NamedTensor[] {
    const sh = this.network.shard;
    return sh ? readShardState(this.backend, this.params, sh, this.slotKinds) : state.readState(this.backend, this.params);
  }

  /**
   * Restores readState()'s tensors (full tensors; a sharded tower takes its ranges of the optimizer's). Checks every
   * name and size first: a mismatched state changes nothing.
   */
  writeState(tensors: Map<string, ArrayLike<number>>): void {
    const sh = this.network.shard;
    const slotWrites = sh ? shardSlotWrites(this.params, sh, this.slotKinds, this.spec.name, tensors) : [];
    state.writeState(this.backend, this.params, this.spec.name, tensors, !sh?.shared); // shared: own pieces only
    for (const [h, v] of [...slotWrites, ...(sh?.shared ? sharedWeightWrites(sh, tensors) : [])]) this.backend.copyIn(h, v);
  }

  /** Optimizer slot kinds (momentum 1, Adam 2). */
  private get slotKinds(): number {
    return this.training ? slotCount(this.training.optimizer) : 0;
  }

  /** Elements of optimizer state this tower keeps: its shard's with the sharded update (Note [Sharded update]). */
  get optimizerNumel(): number {
    return this.network.shard?.optimizerNumel ?? this.slotKinds * this.paramCount;
  }

  writeWeights(values: Map<string, ArrayLike<number>>): void {
    state.writeWeights(this.backend, this.params, values);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.programs.values()) this.backend.releaseProgram(p);
    this.programs.clear();
    this.lastLaunch = undefined;
    this.mem.free();
  }
}
