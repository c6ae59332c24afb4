// The coordinator's towers: their ports, the group that connects them, the reduction in force, the data sets they
// hold, and the queue of work that must run between two steps (state reads, histograms).
import type { TowerError } from '../errors.js';
import type { ConnectGroup, TowerGroup } from '../group/group.js';
import { localWorld, type World } from '../group/world.js';
import type { TowerPort } from '../tower-port/port.js';
import type { BuildRequest, ImageTransform, NamedTensors, TowerInfo } from '../tower-port/protocol.js';
import type { LabeledSet } from '../data/mnist.js';
import type { Schedule } from '../scheduler/schedule.js';
import { scheduleId } from './layout.js';
import type { ReductionOptions } from '../options.js';
import { planBuckets, type Bucket } from '../scheduler/buckets.js';
import type { StateTensor } from '../tower-port/protocol.js';
import { reduceScatterSchedule, shardBounds } from '../scheduler/shards.js';
import { mergeOwned, slotParam } from '../model/sharded-update.js';
import { shardMemory } from '../model/shard-plan.js';

export class TowerSet {
  private group: TowerGroup | undefined;
  private pendingSchedule: Schedule | undefined;
  private pendingBuckets: Schedule[] | undefined;
  /** With overlap on (train's `overlap`), the gradient buckets of the built model (Note [Bucket plan]). */
  private buckets: Bucket[] | undefined;
  private readonly uploaded = new Set<string>();
  private readonly queue: Array<() => Promise<void>> = [];
  built: TowerInfo[] = [];
  /** The first tower death noticed (from TowerPort.death): every later step fails fast naming it. */
  dead: TowerError | undefined;
  /** Set while a run steps the towers: state reads then wait for the gap between two steps. */
  running = false;
  /** How the CPU towers share the cores, in words (Note [CPU layout]); reported in `started`. */
  layout: string | undefined;
  /** Set by close(): a run in flight then fails saying so (src/coordinator/run.ts). */
  closed = false;
  /** With the sharded update (train's `shardUpdate`, 2+ towers): each tower's shard of the arenas (Note [Sharded update]). */
  shards: Array<[number, number]> | undefined;
  /** With the sharded update: every tower holds tower 0's weights (Note [Shared weights]). */
  private sharedWeights = false;

  constructor(
    readonly ports: TowerPort[],
    private readonly connect: ConnectGroup,
    private reduction: ReductionOptions | undefined,
    private readonly collectiveMs: number,
    /** The processes of the run (Note [Process dimension] in src/group/world.ts); one by default. */
    readonly world: World = localWorld(ports.length),
  ) {
    for (const p of ports) void p.death.then((e) => (this.dead ??= e));
  }

  get devices(): string[] {
    return this.ports.map((p) => p.device);
  }

  /** Whether a reduction strategy was chosen (createRuntime's `reduction` other than 'auto', or setReduction): the sharded update's default. */
  get reductionChosen(): boolean {
    const r = this.reduction;
    return r !== undefined && ('custom' in r || (r.algorithm !== undefined && r.algorithm !== 'auto'));
  }

  get size(): number {
    return this.ports.length;
  }

  all<T>(f: (p: TowerPort, rank: number) => Promise<T>): Promise<T[]> {
    return Promise.all(this.ports.map(f));
  }

  /** Plans (and validates) the schedule for the current reduction and the built model (16 elements before a build). */
  schedule(reduction = this.reduction): Schedule {
    return this.world.plan(reduction, { ranks: this.size, length: this.built[0]?.paramCount ?? 16 });
  }

  /** A bad strategy throws and changes nothing; a good one is installed between two steps (never under a collective). */
  setReduction(reduction: ReductionOptions): void {
    const s = this.schedule(reduction);
    const b = this.bucketSchedules(reduction);
    this.reduction = reduction;
    if (this.group) [this.pendingSchedule, this.pendingBuckets] = [s, b];
  }

  /**
   * What sums the gradient, for the run's layout: the schedule's id, and with overlap each bucket's range and schedule
   * (another bucket cut sums some elements in another order, so it is part of what the trajectory depends on).
   */
  reductionId(): string {
    const whole = scheduleId(this.gradSchedule());
    const schedules = this.bucketSchedules();
    if (!this.buckets || !schedules) return whole;
    return `${whole}; overlap, ${this.buckets.length} buckets: ${this.buckets.map((b, k) => `[${b.offset}+${b.length}] ${scheduleId(schedules[k]!)}`).join(', ')}`;
  }

  /** Each bucket's schedule, planned and validated for its length like the whole arena's (undefined: no overlap). */
  private bucketSchedules(reduction = this.reduction): Schedule[] | undefined {
    return this.buckets?.map((b) => this.world.plan(reduction, { ranks: this.size, length: b.length }));
  }

  /** A reduction strategy waits to be installed (the run drains its pipeline first: Note [Pipelined steps]). */
  get schedulePending(): boolean {
    return this.pendingSchedule !== undefined;
  }

  /** Called by the run between two steps. */
  applyPendingSchedule(): void {
    if (this.pendingSchedule) this.group?.setSchedule(this.pendingSchedule, this.pendingBuckets);
    this.pendingSchedule = undefined;
    this.pendingBuckets = undefined;
  }

  /**
   * Builds every tower, connects them into a group and makes the replicas equal.
   *
   * Note [Synchronous update]: tower 0 initialises and broadcasts its weights (copies only), so all replicas start bit-identical. Each step every tower
   * adds the same L2 term, clips with the same norm and applies the same optimizer update to the same reduced
   * gradient (every element reduced once and copied verbatim, Note [Schedules]), so the replicas stay bit-identical
   * without ever exchanging weights; the replica check verifies it. (With `shardUpdate` each tower updates its shard
   * and the weights are all-gathered verbatim instead: Note [Sharded update].)
   */
  async build(req: BuildRequest, seed: number, overlap?: { bucketBytes: number }, shardUpdate = false): Promise<void> {
    this.releaseGroup();
    this.uploaded.clear();
    const n = this.size;
    const sharded = shardUpdate && n > 1 && this.world.processes === 1; // one tower: a no-op (Note [Sharded update])
    this.built = sharded ? await this.buildSharded(req) : await this.all((p) => p.build(req));
    const length = this.built[0]!.paramCount;
    this.shards = sharded ? shardBounds(length, n) : undefined;
    const sharedWeights = (this.sharedWeights = sharded && this.built.slice(1).every((b) => b.sharedWeights === true));
    this.buckets = overlap && this.world.towers > 1 ? planBuckets(this.built[0]!.params, length, overlap.bucketBytes) : undefined;
    const schedules = this.bucketSchedules();
    const buckets = this.buckets?.map((b, k) => ({ offset: b.offset, length: b.length, schedule: schedules![k]! }));
    this.group = await this.world.connect(this.connect)(this.ports, { schedule: this.schedule(), length, timeoutMs: this.collectiveMs, ...(buckets ? { buckets } : {}), ...(this.shards ? { shards: this.shards, sharedWeights } : {}) });
    await this.ports[0]!.initWeights(seed);
    await this.group.shareWeights?.(); // across processes: rank 0's tower 0 to every tower 0
    await this.broadcastWeights();
  }

  /** Tower 0 first, then the others offered its weight and EMA arenas (Note [Shared weights]): all share or none. */
  private async buildSharded(req: BuildRequest): Promise<TowerInfo[]> {
    const towers = this.size;
    const first = await this.ports[0]!.build({ ...req, shard: { rank: 0, towers } });
    const a = this.ports[0]!.endpoint().arenas;
    const share = { weightArena: a.weightArena, ...(a.shardBuffers?.emaArena !== undefined ? { emaArena: a.shardBuffers.emaArena } : {}) };
    const rest = await Promise.all(this.ports.slice(1).map((p, i) => p.build({ ...req, shard: { rank: i + 1, towers, share } })));
    if (new Set(rest.map((b) => b.sharedWeights === true)).size > 1)
      throw new Error(`sharded update: towers ${this.devices.join(', ')} differ in whether they can share tower 0's weights; use towers of one kind`);
    return [first, ...rest];
  }

  broadcastWeights(): Promise<void[]> {
    return this.all((p) => p.broadcastWeights());
  }

  /** Uploads a data set once per build: one shared copy for all towers, no per-sample copies. */
  async upload(key: string, set: LabeledSet, transform?: ImageTransform): Promise<void> {
    if (this.uploaded.has(key)) return;
    const shared = (a: Uint8Array) => {
      const s = new Uint8Array(new SharedArrayBuffer(a.length));
      s.set(a);
      return s;
    };
    const data = { images: shared(set.images), labels: shared(set.labels), count: set.count };
    await this.all((p) => p.uploadDataset(key, data, transform));
    this.uploaded.add(key);
  }

  /** After a missed deadline: frees the towers blocked in the all-reduce; the next run builds a new group. */
  abortGroup(): void {
    this.group?.abort();
    this.group = undefined;
  }

  releaseGroup(): void {
    this.pendingSchedule = undefined;
    this.pendingBuckets = undefined;
    this.group?.release();
    this.group = undefined;
  }

  hold(active: boolean): void {
    for (const p of this.ports) p.hold(active);
  }

  /**
   * Runs `f` now when no run is stepping, else in the next gap between two steps, so it sees every tower after
   * the same step (reads from a steps$ subscriber are consistent).
   */
  betweenSteps<T>(f: () => Promise<T>): Promise<T> {
    if (!this.running) return f();
    return new Promise<T>((resolve, reject) => this.queue.push(() => f().then(resolve, reject)));
  }

  /** Work waiting for the gap between two steps. */
  get queued(): number {
    return this.queue.length;
  }

  /** The run calls this between two steps (only when something is queued: nothing to await on the hot path). */
  async drain(): Promise<void> {
    while (this.queue.length > 0) await this.queue.shift()!();
  }

  readAll(which: 'w' | 'g'): Promise<Array<Map<string, Float32Array>>> {
    return this.betweenSteps(async () => {
      const all = (await this.all((p) => p.readWeights(which))).map((e: NamedTensors) => new Map(e));
      if (!this.shards || which === 'w') return all;
      const merged = mergeOwned(all, this.built[0]!.params, this.shards, (name) => name); // each tower reduced its shard only
      return all.map(() => merged);
    });
  }

  /** The gradient collective in force: the reduce-scatter with the sharded update (the reduction then does not apply). */
  gradSchedule(): Schedule {
    return this.shards ? reduceScatterSchedule(this.shards) : this.schedule();
  }

  /** With the sharded update, the bytes of optimizer state each tower keeps (the `started` event reports them). */
  shardReport(): { optimizerBytes?: number[]; shardMemory?: ReturnType<typeof shardMemory> } {
    return this.shards ? { optimizerBytes: this.built.map((b) => 4 * (b.optimizerNumel ?? 0)), shardMemory: shardMemory(this.sharedWeights, this.size) } : {};
  }

  /** The whole training state (tower 0's; with the sharded update the optimizer slots merged from every tower's shard). */
  async readState(): Promise<StateTensor[]> {
    if (!this.shards) return this.ports[0]!.readState();
    const all = await this.all((p) => p.readState());
    const merged = mergeOwned(all.map((ts) => new Map(ts.map((t) => [t.name, t.data]))), this.built[0]!.params, this.shards, slotParam);
    return all[0]!.map((t) => ({ ...t, data: merged.get(t.name)! }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.releaseGroup();
    await Promise.all(this.ports.map((p) => p.close()));
    this.world.close();
  }
}
