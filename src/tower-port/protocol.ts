// The types that cross the tower port (coordinator <-> tower), whether the tower lives in this thread, in a worker
// thread (comlink) or, later, in another process. Tensors never cross here: only names, indices and scalars, and
// copies of state for checkpoints and checks (never on the hot path).
import type { DeviceFault } from '../backend/backend.js';
import type { ResolvedModelSpec } from '../model/spec.js';
import type { ParamPlacement } from '../model/placement.js';
import type { TrainingOptions } from '../model/optimizer.js';
import type { ImageTransform, StepLaunch, StepTimings, CollectiveSlot } from '../model/tower.js';

export type { ImageTransform, StepLaunch, StepTimings, CollectiveSlot };

/**
 * One fault armed for one step: the Backend's DeviceFault (runWith's 4th argument, native and reference alike;
 * Note [Fault injection] in cpp/fault.h, the points in Note [Fault points], src/model/fault.ts).
 */
export type FaultSpec = DeviceFault;

export interface BuildRequest {
  spec: ResolvedModelSpec;
  /** Largest batch any step or evaluation will run on this tower. */
  maxBatch: number;
  training: TrainingOptions;
  /** The sharded update: this tower's rank among how many (Note [Sharded update] in src/model/sharded-update.ts). */
  shard?: { rank: number; towers: number; share?: { weightArena: number; emaArena?: number } };
}

/** What the coordinator learns about a built tower (no buffer handles: those stay behind the port). */
export interface TowerInfo {
  device: string;
  inputDim: number;
  outputDim: number;
  paramCount: number;
  /** Each parameter with where it lives and the kernels that touch it (src/model/placement.ts). */
  params: ParamPlacement[];
  /** Elements of optimizer state the tower keeps (1/N of the unsharded with the sharded update). */
  optimizerNumel?: number;
  /** With the sharded update: [offset, length] of the tower's shard of the arenas. */
  shard?: [number, number];
  /** With the sharded update: its weight and EMA arenas are tower 0's memory (Note [Shared weights]). */
  sharedWeights?: boolean;
}

/** One training step on one tower's shard: row indices into an uploaded data set and the hyper-parameters. */
export interface StepRequest {
  dataset: string;
  indices: Int32Array;
  /** [dy, dx, flip] per example of this shard, for a data set uploaded with random crops (src/data/cifar10.ts). */
  crop?: Int32Array;
  lr: number;
  /** The 1-based step number. */
  t: number;
  /** 1 / global batch (Note [Shard weighting]). */
  gradScale: number;
  /** 'gradient': the asynchronous mode's program, without all-reduce and update (Note [Parameter server]). */
  variant?: StepVariant;
}

export type StepVariant = 'step' | 'gradient';

export interface StepReply {
  /** This shard's data loss (weighted by gradScale), the L2 penalty, the reduced gradient's norm. */
  loss: number;
  regLoss: number;
  gradNorm: number;
  /** Per-phase ms; startMs on the coordinator's clock (performance.now()). */
  timings: StepTimings;
  /** Time this tower waited for the others inside the all-reduce. */
  reduceWaitMs: number;
  /** The non-finite guard skipped this step's update. */
  skipped: boolean;
  /** A chained step not run: the step before it tripped its guard or failed (Note [Pipelined steps]). */
  cancelled?: boolean;
}

export interface ReplicaHashes {
  total: string;
  tensors: Array<[string, string]>;
}

export type NamedTensors = Array<[string, Float32Array]>;

export interface StateTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface EvalReply {
  lossSum: number;
  correct: number;
  count: number;
}

/**
 * A tower's places in its group's two collectives: the gradient all-reduce (none for a tower alone in its group:
 * its step then takes the lone program) and the weight broadcast.
 */
export interface GroupSlots {
  grad?: CollectiveSlot;
  weights: CollectiveSlot;
}

/** A labelled u8 data set in shared memory: one copy for every tower of the process. */
export interface SharedDataset {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

// ---- the worker thread's side (src/actors/tower-actor.ts), as comlink exposes it ------------------------------

export interface ActorStart {
  kind: string;
  index: number;
  /** Threads this tower's GEMMs use (the results do not depend on it; Note [GEMM threads]). */
  gemmThreads: number;
  /** Its compute threads' CPUs, the device thread's first (Note [Thread placement]); absent: not pinned. */
  cpus?: number[];
}

/** The arenas a collective group is built over (native buffer handles; only the group module reads them). */
export interface ArenaHandles {
  gradArena: number;
  weightArena: number;
  /** With the sharded update: the norm partials buffer and the EMA arena its all-gathers run over. */
  shardBuffers?: { partials: number; emaArena?: number; factors?: number[] };
}

/** What a device actor exposes over comlink. */
export interface TowerActorApi {
  build(req: BuildRequest): Promise<TowerInfo & ArenaHandles>;
  initWeights(seed: number): Promise<void>;
  uploadDataset(key: string, set: SharedDataset, transform?: ImageTransform): Promise<void>;
  joinGroup(slots: GroupSlots): Promise<void>;
  broadcastWeights(): Promise<void>;
  /** The handles of the one step path (Note [One hand-off per step]); compiled once per (data set, batch size). */
  stepLaunch(dataset: string, batch: number, variant?: StepVariant): Promise<StepLaunch>;
  evaluate(key: string, useEma: boolean): Promise<EvalReply>;
  /** After a guard trip: the first tensor whose local (pre-reduce) gradient was not finite. */
  firstNonFinite(): Promise<string | undefined>;
  replicaHashes(): Promise<ReplicaHashes>;
  readWeights(which: 'w' | 'g'): Promise<NamedTensors>;
  readState(): Promise<StateTensor[]>;
  writeState(tensors: NamedTensors): Promise<void>;
  dispose(): Promise<void>;
}
