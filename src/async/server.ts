// The parameter server's tower (Note [Parameter server] in cpp/ps/server.h): the model built on a device of its
// own, its apply program (the synchronous update), the native server over its arenas, and the test set it
// evaluates the master weights on.
import { NativeDevice } from '../backend/native-device.js';
import { Tower, type DeviceDataset, type ImageTransform } from '../model/tower.js';
import { paramUpdateOp } from '../model/passes.js';
import { stateTensors, type NamedTensor } from '../model/state.js';
import type { Op } from '../backend/backend.js';
import type { Param } from '../model/memory.js';
import { learningRate, parseSchedule } from '../model/schedule.js';
import type { ResolvedModelSpec } from '../model/spec.js';
import type { TrainingOptions, ResolvedTrainingOptions } from '../model/optimizer.js';
import type { Network } from '../model/network.js';
import type { LabeledSet } from '../data/mnist.js';
import { psNative, type Applied, type Pulled } from './native.js';

export interface ParamRange {
  first: number;
  end: number;
}

export interface ServerOptions {
  spec: ResolvedModelSpec;
  training: TrainingOptions;
  /** Largest evaluation batch. */
  maxBatch: number;
  towers: number;
  /** Versions the run takes in all (the learning-rate table's length). */
  totalSteps: number;
  stalenessLr: boolean;
  /** The parameters this server owns, [first, end) in declaration order (several servers), or a function of every
   *  parameter's bytes that gives them (Note [Parameter shards]); default all. */
  shard?: ParamRange | ((bytes: number[]) => ParamRange);
}

/** The learning rate at every version: the schedule as data, so the server never calls back into JS. */
export function learningRates(training: TrainingOptions, totalSteps: number): Float32Array {
  const schedule = parseSchedule(training.optimizer.lr);
  return Float32Array.from({ length: Math.max(1, totalSteps) }, (_, v) => learningRate(schedule, v));
}

/** The parameters of a shard as a network of their own: their views, a view of their part of the gradient arena. */
function shardNetwork(t: Tower, first: number, end: number): { net: Network; views: number[] } {
  const net = t.network;
  if (first === 0 && end === net.params.length) return { net, views: [] };
  const params = net.params.slice(first, end);
  const offset = params[0]!.offset;
  const length = params.reduce((n, p) => n + p.numel, 0);
  const gradArena = t.backend.allocView(net.gradArena, offset, length);
  return { net: { ...net, params, gradArena, paramCount: length }, views: [gradArena] };
}

// Note [Global norm across shards]: clipping and the non-finite guard need the whole gradient's norm, but with
// several servers each owns a shard of the parameters and receives only its part of a gradient. So the tower that
// computes a gradient also runs the update's first pass (gradientOps in src/model/step-program.ts, the kernels
// of the first pass of Note [Fused parameter tail]: L2 into the gradient with the weights it pulled, the global
// squared norm in declaration order, the L2 loss) and the push carries that norm (one f32) with the gradient, or with each shard's
// part. A server's apply program takes it into normSq, guards on it ('@guard') and runs the second pass (clipping by
// it, the optimizer, the EMA) on its own parameters. So every server clips by, and guards on, the same global norm,
// and S servers apply the very bits one server does to the same pushes. The L2 term is that of the weights the
// gradient was computed on (the weights that produced its data loss; the reported L2 loss is theirs), not of the
// master weights at apply time: the same when a gradient's lag is 0 (one tower), within lag updates otherwise.

/** The server's apply program: the pushed global norm into normSq, its '@guard', the second pass of its shard. */
function applyOps(net: Network, training: ResolvedTrainingOptions, normSqIn: number): Op[] {
  const { normSq, regLoss } = net.buffers;
  return [
    { kernel: 'fill', inputs: [], outputs: [regLoss], attrs: { N: 1, value: 0 } }, // the tower reports the L2 loss
    { kernel: 'copy', inputs: [normSqIn], outputs: [normSq], attrs: { N: 1 } },
    { kernel: '@guard', inputs: [normSq], outputs: [] },
    ...net.params.map((p) => paramUpdateOp(p, training, net.buffers)),
  ];
}

export class ServerTower {
  readonly tower: Tower;
  readonly training: ResolvedTrainingOptions;
  /** The shard's element range in the arenas. */
  readonly offset: number;
  readonly length: number;
  private handle: number | undefined;
  private apply: number | undefined;
  private readonly views: number[];
  /** The push's global squared norm goes here (Note [Global norm across shards]). */
  private readonly normSqIn: number;
  private readonly datasets = new Map<string, DeviceDataset>();
  private readonly range: ParamRange;
  private closed = false;
  /** With several servers: brings the other servers' shards (weights, and the EMA when there is one) into this
   *  tower before an evaluation (src/async/shard-link.ts). */
  gatherShards: (() => Promise<void>) | undefined;

  private constructor(
    readonly device: NativeDevice,
    private readonly o: ServerOptions,
  ) {
    this.tower = new Tower(device, o.spec, { maxBatch: o.maxBatch, training: o.training });
    this.training = this.tower.training!;
    const all = { first: 0, end: this.tower.params.length };
    this.range = typeof o.shard === 'function' ? o.shard(this.tower.params.map((p) => p.numel * 4)) : (o.shard ?? all);
    const { net, views } = shardNetwork(this.tower, this.range.first, this.range.end);
    this.views = views;
    this.offset = net.params[0]?.offset ?? 0;
    this.length = net.paramCount;
    this.normSqIn = this.tower.backend.alloc(1);
    this.apply = device.compile(applyOps(net, this.training, this.normSqIn));
  }

  /** Builds the server's tower on `cpu:<index>` (the first index after the towers'). */
  static open(index: number, o: ServerOptions): ServerTower {
    const device = NativeDevice.open('cpu', index);
    try {
      return new ServerTower(device, o);
    } catch (e) {
      void device.close();
      throw e;
    }
  }

  get label(): string {
    return `parameter server (${this.device.name})`;
  }

  /** Starts serving from `version` (0, or a checkpoint's) with the weights the tower holds now. */
  start(version: number): void {
    const t = this.tower;
    const { hyper, normSq, regLoss } = t.network.buffers;
    this.handle = psNative().psCreate({
      device: this.device.id,
      weights: t.weightArena,
      grads: t.gradArena,
      hyper,
      normSq,
      regLoss,
      apply: this.apply!,
      towers: this.o.towers,
      lr: learningRates(this.o.training, this.o.totalSteps),
      stalenessLr: this.o.stalenessLr,
      version,
      normSqIn: this.normSqIn,
    });
  }

  get native(): number {
    if (this.handle === undefined) throw new Error(`${this.label} is not serving yet (start() it)`);
    return this.handle;
  }

  pull(rank: number, weightArena: number): Promise<Pulled> {
    return psNative().psPull(this.native, rank, weightArena);
  }

  /** normSq: the gradient's global squared norm, with L2 (its tower's third read). */
  push(rank: number, gradArena: number, normSq: number): Promise<Applied> {
    return psNative().psPush(this.native, rank, gradArena, normSq);
  }

  drop(rank: number): void {
    if (this.handle !== undefined && !this.closed) psNative().psDrop(this.handle, rank);
  }

  info(): { version: number; clocks: number[]; alive: boolean[] } {
    return psNative().psInfo(this.native);
  }

  uploadDataset(key: string, set: LabeledSet, transform?: ImageTransform): void {
    this.datasets.set(key, this.tower.uploadDataset(set.images, set.labels, set.count, 1 / 255, transform));
  }

  /** Loss and accuracy of the master weights (or their EMA) on an uploaded set; run while no push is applied.
   *  With several servers, of every shard's master weights (or EMA), gathered first. */
  async evaluate(key: string, useEma: boolean): Promise<{ loss: number; accuracy: number; useEma: boolean }> {
    const ds = this.datasets.get(key);
    if (!ds) throw new Error(`${this.label}: no data set '${key}' was uploaded`);
    if (this.gatherShards) await this.gatherShards();
    const r = await this.tower.evaluate(ds, { useEma });
    return { loss: r.loss, accuracy: r.accuracy, useEma };
  }

  /** The state a checkpoint holds (weights, slots, EMA of `params`), all from one moment, and its version. With
   *  several servers the lead snapshots every parameter, the other shards gathered into its tower just before. */
  async snapshot(params: Param[] = this.shardParams()): Promise<{ version: number; tensors: NamedTensor[] }> {
    const list = stateTensors(params);
    const s = await psNative().psSnapshot(this.native, list.map((t) => t.handle));
    return { version: s.version, tensors: list.map((t, i) => ({ name: t.name, shape: t.p.shape, data: s.tensors[i]! })) };
  }

  /** The shard's parameters (all of them with one server). */
  shardParams(): Tower['params'] {
    return this.tower.params.slice(this.range.first, this.range.end);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.handle !== undefined) psNative().psRelease(this.handle);
    if (this.apply !== undefined) this.device.releaseProgram(this.apply);
    for (const v of this.views) this.device.free(v);
    this.device.free(this.normSqIn);
    this.tower.dispose();
    await this.device.close();
  }
}
