// One tower on one device, with its uploaded data sets and its places in the group's collectives: what a tower
// port's calls do on the tower's side. A worker thread exposes one over comlink (src/actors/tower-actor.ts); the
// in-process port calls one directly.
import type { Backend } from '../backend/backend.js';
import { Tower, type DeviceDataset } from '../model/tower.js';
import { placementOf } from '../model/placement.js';
import type { ArenaHandles, BuildRequest, GroupSlots, StepVariant, TowerActorApi, TowerInfo } from './protocol.js';

/** Host copies as float32 (the reference backend keeps float64; native devices already give Float32Array). */
function f32(v: ArrayLike<number>): Float32Array {
  return v instanceof Float32Array ? v : Float32Array.from(v);
}

/** The buffers a sharded tower's all-gathers run over (Note [Sharded update]). */
function shardBuffers(t: Tower): Pick<ArenaHandles, 'shardBuffers'> {
  const sh = t.network.shard;
  const factors = t.factorHandles();
  return sh ? { shardBuffers: { partials: sh.partials, ...(t.network.emaArena !== undefined ? { emaArena: t.network.emaArena } : {}), ...(factors ? { factors } : {}) } } : {};
}

export class TowerHost implements TowerActorApi {
  private tower: Tower | undefined;
  private readonly datasets = new Map<string, DeviceDataset>();
  private slots: GroupSlots | undefined;

  constructor(private readonly device: Backend) {}

  private need(): Tower {
    if (!this.tower) throw new Error('build() the tower first');
    return this.tower;
  }

  private dataset(key: string): DeviceDataset {
    const ds = this.datasets.get(key);
    if (!ds) throw new Error(`no data set '${key}' was uploaded`);
    return ds;
  }

  /** The arenas of the built tower (handles, for the group module). */
  arenas(): ArenaHandles {
    const t = this.need();
    return { gradArena: t.gradArena, weightArena: t.weightArena, ...shardBuffers(t) };
  }

  async build(req: BuildRequest): Promise<TowerInfo & ArenaHandles> {
    this.tower?.dispose();
    this.tower = undefined;
    this.datasets.clear();
    this.slots = undefined;
    const t = (this.tower = new Tower(this.device, req.spec, { maxBatch: req.maxBatch, training: req.training, ...(req.shard ? { shard: req.shard } : {}) }));
    const sh = t.network.shard;
    return {
      device: this.device.name,
      inputDim: t.inputDim,
      outputDim: t.outputDim,
      paramCount: t.paramCount,
      params: placementOf(t),
      optimizerNumel: t.optimizerNumel,
      ...(sh ? { shard: [sh.offset, sh.length] as [number, number], sharedWeights: sh.shared } : {}),
      gradArena: t.gradArena,
      weightArena: t.weightArena,
      ...shardBuffers(t),
    };
  }

  async initWeights(seed: number): Promise<void> {
    this.need().initWeights(seed);
  }

  async uploadDataset(key: string, set: { images: Uint8Array; labels: Uint8Array; count: number }, transform?: Parameters<Tower['uploadDataset']>[4]): Promise<void> {
    this.datasets.set(key, this.need().uploadDataset(set.images, set.labels, set.count, 1 / 255, transform));
  }

  async joinGroup(slots: GroupSlots): Promise<void> {
    this.slots = slots;
  }

  async broadcastWeights(): Promise<void> {
    if (!this.slots) throw new Error('not in a group (no weight collective)');
    await this.need().runWeightCollective(this.slots.weights);
  }

  async stepLaunch(key: string, batch: number, variant: StepVariant = 'step'): ReturnType<TowerActorApi['stepLaunch']> {
    if (variant === 'gradient') return this.need().gradientLaunch(batch, this.dataset(key));
    return this.need().stepLaunch(batch, this.dataset(key), this.slots?.grad);
  }

  async evaluate(key: string, useEma: boolean): ReturnType<TowerActorApi['evaluate']> {
    const r = await this.need().evaluate(this.dataset(key), { useEma });
    return { lossSum: r.loss * r.count, correct: Math.round(r.accuracy * r.count), count: r.count };
  }

  async firstNonFinite(): Promise<string | undefined> {
    await this.need().refreshLocalNorms();
    return this.need().firstNonFiniteLocal();
  }

  async replicaHashes(): ReturnType<TowerActorApi['replicaHashes']> {
    return this.need().replicaHashes();
  }

  async readWeights(which: 'w' | 'g'): ReturnType<TowerActorApi['readWeights']> {
    return [...this.need().readWeights(which)].map(([k, v]) => [k, f32(v)] as [string, Float32Array]);
  }

  async readState(): ReturnType<TowerActorApi['readState']> {
    return this.need().readState().map((t) => ({ ...t, data: f32(t.data) }));
  }

  async writeState(tensors: Array<[string, Float32Array]>): Promise<void> {
    this.need().writeState(new Map(tensors));
  }

  async dispose(): Promise<void> {
    this.tower?.dispose();
    this.tower = undefined;
    this.datasets.clear();
    await this.device.close();
  }
}
