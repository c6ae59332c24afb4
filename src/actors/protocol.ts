// The messages between the coordinator and a device actor (a worker_thread), as comlink exposes them.
import type { ModelSpec } from '../model/spec.js';
import type { TrainingOptions } from '../model/optimizer.js';
import type { StepTimings } from '../model/tower.js';

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
  gradScale: number;
  lr: number;
  t: number;
  /** Fault injection for tests only (see test/runtime.test.ts). */
  inject?: 'kernel-throw' | 'exit';
}

export interface StepReply {
  loss: number;
  regLoss: number;
  timings: StepTimings;
  reduceWaitMs: number;
}

/** What a device actor exposes over comlink. Tensors never cross here: only handles, indices and scalars. */
export interface TowerActorApi {
  build(req: BuildRequest): Promise<BuildReply>;
  initWeights(seed: number): Promise<void>;
  uploadDataset(key: string, images: Uint8Array, labels: Uint8Array, count: number): Promise<void>;
  setCollectives(grad: number, weights: number, rank: number): Promise<void>;
  broadcastWeights(): Promise<void>;
  step(req: StepRequest): Promise<StepReply>;
  evaluate(key: string, useEma: boolean): Promise<{ lossSum: number; correct: number; count: number }>;
  readWeights(): Promise<Array<[string, Float32Array]>>;
  readGradients(): Promise<Array<[string, Float32Array]>>;
  dispose(): Promise<void>;
}
