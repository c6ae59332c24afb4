// The runtime: the facade an app holds. It opens the towers (one per device), starts training runs and answers
// questions about the towers; the work is done by src/coordinator/ (the loop and its policies) through tower ports.
import { parseDevices } from './devices.js';
import { parseRuntimeOptions, parseTrainOptions, type ReductionOptions, type ResolvedRuntimeOptions, type RuntimeOptions, type TrainOptions } from './options.js';
import type { Schedule } from './scheduler/schedule.js';
import { joinWorld } from './group/join.js';
import type { TrainRun } from './events.js';
import { connectLocalGroup } from './group/local-group.js';
import type { ConnectGroup } from './group/group.js';
import { gemmThreadsFor, workerPorts, type PortOpener } from './tower-port/open.js';
import { layoutSlots } from './tower-port/layout.js';
import { placeThreads, PlacementError, type Placement } from './tower-port/thread-placement.js';
import { holdCoordinator, processCpus } from './tower-port/coordinator-cpus.js';
import { native } from './native/addon.js';
import { checkShardUpdate, shardUpdateByDefault } from './model/sharded-update.js';
import type { Layout } from './options.js';
import { ConfigError } from './errors.js';
import { availableParallelism } from 'node:os';
import { TowerSet } from './coordinator/towers.js';
import { startRun } from './coordinator/run.js';
import { checkReplicas, type ReplicaReport } from './coordinator/replicas.js';
import { placementLines } from './coordinator/placement.js';
import { attachInternals, type RuntimeInternals } from './coordinator/internals.js';
import { asyncRunKind } from './async/kind.js';

// What the repository's tests and benchmarks import with the runtime (an app imports all of it from src/index.ts).
export { mnist, cifar10, blocks, type DataInput } from './data/inputs.js';
export type { RuntimeOptions, TrainOptions, GuardOptions } from './options.js';
export type { TrainRun, StepEvent, RunEvent, RunSummary, TowerTimings } from './events.js';
export { TowerError, NonFiniteError, ReplicaMismatchError, WatchdogError } from './errors.js';
import { RuntimeClosedError } from './errors.js';

export class Runtime {
  readonly #towers: TowerSet;
  readonly #opts: ResolvedRuntimeOptions;
  readonly #internals: RuntimeInternals;
  readonly #layout: () => Layout;
  readonly #placement: Placement | undefined;
  #running = false;
  /** The run in progress takes the sharded update (Note [Sharded update]): setReduction would not apply to it. */
  #sharded = false;
  #closed = false;

  private constructor(towers: TowerSet, opts: ResolvedRuntimeOptions, layout: () => Layout, placement: Placement | undefined) {
    this.#towers = towers;
    this.#placement = placement;
    this.#opts = opts;
    this.#layout = layout;
    this.#internals = { towers, faults: undefined };
    attachInternals(this, this.#internals);
  }

  /** Validates the options, then starts one tower per device (a worker thread each); see createRuntime. */
  static create(opts: RuntimeOptions): Promise<Runtime> {
    return Runtime.open(opts, workerPorts, connectLocalGroup);
  }

  /** @internal Opens a runtime on other towers (src/advanced.ts: in-process towers). */
  static async open(opts: RuntimeOptions, openPorts: PortOpener, connect: ConnectGroup): Promise<Runtime> {
    const o = parseRuntimeOptions(opts);
    const asked = parseDevices(o.devices, { maxTowers: o.maxTowers }); // bounded before any tower starts
    if (o.layout?.extraTowers === 'fold' && o.group)
      throw new ConfigError("layout.extraTowers 'fold' works in one process; a process group runs the same towers in every process (use 'threads', the default in a group)", 'layout.extraTowers');
    const cores = o.layout?.cores ?? availableParallelism();
    const foldByDefault = !o.group && openPorts.deviceThreads;
    const slots = layoutSlots(asked, o.layout ?? {}, cores, 1, foldByDefault).slots; // Note [CPU layout]: extra CPU towers folded by default
    // A bad strategy fails before any tower starts; with a group, after every process joined (src/group/join.ts).
    const world = await joinWorld(o, slots.length);
    const gemmThreads = gemmThreadsFor(slots, o.gemmThreads, world.processesOnHost, cores);
    let ports: ReturnType<PortOpener>;
    let placement: Placement | undefined;
    try {
      placement = placeTowers(slots, gemmThreads, openPorts.deviceThreads, world, o.layout);
      ports = openPorts(slots, { callMs: o.callTimeoutMs, gemmThreads, ...(placement ? { cpus: placement.towers } : {}) });
    } catch (e) {
      world.close();
      throw e;
    }
    const towers = new TowerSet(ports, connect, o.reduction, o.collectiveTimeoutMs, world);
    towers.layout = layoutSlots(asked, o.layout ?? {}, cores, world.processesOnHost, foldByDefault).text + (placement ? `; ${placement.text}` : '');
    const gemm = openPorts.arithmetic();
    // The run settings' layout (Note [Run settings]): what this runtime's towers are and how they compute.
    const layout = (): Layout => ({ towers: towers.devices, gemmThreads, gemm, reduction: towers.reductionId(), shares: o.shares, ...(towers.shards ? { shardUpdate: true } : {}) });
    return new Runtime(towers, o, layout, placement);
  }

  /** The towers' device labels, in rank order. */
  get devices(): string[] {
    return this.#towers.devices;
  }

  /**
   * Changes the reduction strategy; takes effect at the next step. A bad strategy is rejected, nothing changes. Refused
   * (ConfigError) while a run with the sharded update is in progress: its fused reduce-scatter follows no schedule.
   */
  setReduction(reduction: ReductionOptions): void {
    if (this.#running && this.#sharded)
      throw new ConfigError(
        'setReduction: this run uses the sharded update (Note [Sharded update]: on by default for two CPU towers), whose fused reduce-scatter follows no reduction schedule; ' +
          'pass shardUpdate: false to train() (CLI --no-shard-update), or choose the reduction in createRuntime or before train()',
        'reduction',
      );
    this.#towers.setReduction(reduction);
  }

  /** The schedule the next step will use (for inspection and docs). */
  currentSchedule(): Schedule {
    return this.#towers.schedule();
  }

  /**
   * Starts training; progress flows out of the returned streams, the outcome through `done` (Note [Run streams]).
   * One run at a time per runtime. Options are validated here: a bad option throws a ConfigError naming it.
   */
  train(options: TrainOptions): TrainRun {
    if (this.#closed) throw new RuntimeClosedError('the runtime is closed (rt.close() was called); create a new one with createRuntime()');
    if (this.#running) throw new Error('a training run is already in progress on this runtime; await its done first');
    const o = parseTrainOptions(options);
    const world = this.#towers.world;
    o.shardUpdate ??= shardUpdateByDefault(o, { devices: this.#towers.devices, processes: world.processes, reductionChosen: this.#towers.reductionChosen }); // Note [Sharded update]: the default
    checkShardUpdate(o, world.processes); // Z: refusals of the sharded update (Note [Sharded update])
    this.#sharded = o.shardUpdate === true && this.#towers.size > 1;
    const kind = asyncRunKind(o, this.#towers.size, world.processes); // mode 'async' (src/async/), checked here; undefined: synchronous
    this.#running = true;
    let release = (): void => undefined;
    let run: TrainRun;
    try {
      release = holdCoordinator(this.#placement?.coordinator); // Note [Thread placement]: for the length of the run
      run = startRun(this.#towers, o, { callMs: this.#opts.callTimeoutMs, shares: this.#opts.shares, faults: this.#internals.faults, layout: this.#layout }, kind);
    } catch (e) {
      release();
      this.#running = false;
      throw e;
    }
    const ended = () => {
      release();
      this.#running = false;
    };
    run.done.then(ended, ended);
    return run;
  }

  /**
   * The replica consistency check, on demand: every tower hashes its weights on its device; towers whose hash
   * differs from tower 0's are named with their first differing tensor. During a run it runs between two steps.
   */
  checkReplicas(): Promise<ReplicaReport> {
    return this.#read('checkReplicas', () => this.#towers.betweenSteps(() => checkReplicas(this.#towers)));
  }

  /** Each tower's weights (copies, for checks and checkpoints; during a run, read between two steps). */
  readWeights(): Promise<Array<Map<string, Float32Array>>> {
    return this.#read('readWeights', () => this.#towers.readAll('w'));
  }

  /** Each tower's gradients of the last step (after the all-reduce). */
  readGradients(): Promise<Array<Map<string, Float32Array>>> {
    return this.#read('readGradients', () => this.#towers.readAll('g'));
  }

  /** A state read, refused plainly on a closed runtime (also when it closes while the read waits for its gap). */
  async #read<T>(what: string, f: () => Promise<T>): Promise<T> {
    const closed = () => new RuntimeClosedError(`${what}(): the runtime is closed (rt.close() was called); read before closing`);
    if (this.#closed) throw closed();
    try {
      return await f();
    } catch (e) {
      throw this.#closed ? Object.assign(closed(), { cause: e }) : e;
    }
  }

  /**
   * Where everything lives (TF's log_device_placement): per tower, each parameter with its device, its place in
   * the weight arena and its layer's kernels. Valid after train() has built the towers.
   */
  placement(): string[] {
    return placementLines(this.#towers.built, this.currentSchedule().name);
  }

  /** Frees every device and ends every worker. Always returns, also after a tower died; no timer is left behind. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#towers.close();
  }
}

/**
 * Where this process's compute threads run (Note [Thread placement]), or undefined where nothing is placed (towers
 * without device threads). `layout.pin: true` that cannot be honoured is a ConfigError naming it.
 */
function placeTowers(slots: Array<{ kind: string; label: string }>, gemmThreads: number[], deviceThreads: boolean, world: { grouped: boolean; localRank: number; processesOnHost: number }, layout: { cores?: number; pin?: boolean } | undefined): Placement | undefined {
  if (!deviceThreads) return undefined;
  const placed = slots.map((s, r) => ({ label: s.label, threads: s.kind === 'cpu' ? gemmThreads[r]! : 0 }));
  try {
    return placeThreads(placed, {
      pin: layout?.pin,
      allowed: processCpus(),
      cores: layout?.cores,
      supported: native().affinitySupported,
      group: world.grouped ? { localRank: world.localRank, localWorldSize: world.processesOnHost } : undefined,
    });
  } catch (e) {
    if (e instanceof PlacementError) throw new ConfigError(e.message, 'layout.pin');
    throw e;
  }
}

/**
 * Starts one tower per device (see Note [Device grammar]; e.g. 'cpu*3', 'cuda:all'), each on its own worker thread.
 * An idle runtime does not keep the process alive; a running train() does (Note [Process lifetime]).
 */
export function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  return Runtime.create(opts);
}
