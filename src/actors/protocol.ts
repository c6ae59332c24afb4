// The messages between the coordinator and a device actor (a worker_thread), as comlink exposes them.
import type { ModelSpec } from '../model/spec.js';
import type { TrainingOptions } from '../model/optimizer.js';
import type { ImageTransform, StepFault, StepLaunch, StepTimings } from '../model/tower.js';

export interface ActorStart {
  kind: string;
  index: number;
  /** Threads this tower's GEMM may use (cores / towers on CPU). */
  gemmThreads: number;
}

export interface BuildRequest {
  spec: ModelSpec;
  maxBatch: number;
  training: TrainingOptions;
}

export interface BuildReply {
  device: string;
  inputDim: number;
  outputDim: number;
  paramCount: number;
  gradArena: number;
  weightArena: number;
  params: Array<{ name: string; shape: number[] }>;
}

export interface StepRequest {
  dataset?: string;
  /** Row indices into an uploaded dataset (a few hundred bytes per step), or the rows themselves. */
  indices?: Int32Array;
  x?: Float32Array;
  labels?: Int32Array;
  /** [dy, dx, flip] per example of this shard, for a dataset uploaded with random crops (src/data/cifar10.ts cropParams). */
  crop?: Int32Array;
  gradScale: number;
  lr: number;
  t: number;
  /** Fault injection for tests only (Note [Fault injection] in tower-worker.ts). */
  inject?: 'kernel-throw' | 'exit';
  fault?: StepFault;
}

export interface StepReply {
  loss: number;
  regLoss: number;
  gradNorm: number;
  timings: StepTimings;
  reduceWaitMs: number;
  /** The non-finite guard skipped this step's update. */
  skipped: boolean;
}

/** What a device actor exposes over comlink. Tensors never cross here: only handles, indices and scalars. */
export interface TowerActorApi {
  build(req: BuildRequest): Promise<BuildReply>;
  initWeights(seed: number): Promise<void>;
  uploadDataset(key: string, images: Uint8Array, labels: Uint8Array, count: number, transform?: ImageTransform): Promise<void>;
  setCollectives(grad: number, weights: number, rank: number): Promise<void>;
  broadcastWeights(): Promise<void>;
  step(req: StepRequest): Promise<StepReply>;
  /** Handles for the coordinator's fast path (Note [One hand-off per step]); compiled once per batch size. */
  stepLaunch(dataset: string, batch: number): Promise<StepLaunch>;
  evaluate(key: string, useEma: boolean): Promise<{ lossSum: number; correct: number; count: number }>;
  /** The phase of the step running now ('forward', 'reduce', ...), for the watchdog; undefined when idle. */
  phase(): Promise<string | undefined>;
  /** After a guard trip: the first tensor whose local (pre-reduce) gradient was not finite. */
  firstNonFinite(): Promise<string | undefined>;
  replicaHashes(): Promise<{ total: string; tensors: Array<[string, string]> }>;
  readWeights(): Promise<Array<[string, Float32Array]>>;
  readState(): Promise<Array<{ name: string; shape: number[]; data: Float32Array }>>;
  writeState(tensors: Array<[string, Float32Array]>): Promise<void>;
  readGradients(): Promise<Array<[string, Float32Array]>>;
  dispose(): Promise<void>;
}
