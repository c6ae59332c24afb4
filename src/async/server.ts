// The parameter server's tower (Note [Parameter server] in cpp/ps/server.h): the model built on a device of its
// own, its apply program (the synchronous update), the native server over its arenas, and the test set it
// evaluates the master weights on.
import { NativeDevice } from '../backend/native-device.js';
import { Tower, type DeviceDataset, type ImageTransform } from '../model/tower.js';
import { updateOps } from '../model/passes.js';
import { stateTensors, type NamedTensor } from '../model/state.js';
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

export class ServerTower {
  readonly tower: Tower;
  readonly training: ResolvedTrainingOptions;
  /** The shard's element range in the arenas. */
  readonly offset: number;
  readonly length: number;
  private handle: number | undefined;
  private apply: number | undefined;
  private readonly views: number[];
  private readonly datasets = new Map<string, DeviceDataset>();
  private readonly range: ParamRange;
  private closed = false;
  /** With several servers: brings the other servers' shards into this tower's weights before an evaluation. */
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
    this.apply = device.compile(updateOps(net, this.training));
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
    });
  }

  get native(): number {
    if (this.handle === undefined) throw new Error(`${this.label} is not serving yet (start() it)`);
    return this.handle;
  }

  pull(rank: number, weightArena: number): Promise<Pulled> {
    return psNative().psPull(this.native, rank, weightArena);
  }

  push(rank: number, gradArena: number): Promise<Applied> {
    return psNative().psPush(this.native, rank, gradArena);
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
   *  With several servers, the master weights of every shard (the EMA lives on each shard's server: not used). */
  async evaluate(key: string, useEma: boolean): Promise<{ loss: number; accuracy: number; useEma: boolean }> {
    const ds = this.datasets.get(key);
    if (!ds) throw new Error(`${this.label}: no data set '${key}' was uploaded`);
    if (this.gatherShards) {
      await this.gatherShards();
      useEma = false;
    }
    const r = await this.tower.evaluate(ds, { useEma });
    return { loss: r.loss, accuracy: r.accuracy, useEma };
  }

  /** The state a checkpoint holds (weights, slots, EMA of the shard's parameters), all from one moment, and its version. */
  async snapshot(): Promise<{ version: number; tensors: NamedTensor[] }> {
    const list = stateTensors(this.shardParams());
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
    this.tower.dispose();
    await this.device.close();
  }
}
