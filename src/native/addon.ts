// Types the compiled N-API addon's surface and loads it (load.ts finds the prebuilt or source-built file).
import type { Op } from '../backend/backend.js';
import { loadAddon } from './load.js';

export type NativeDType = 'f32' | 'i32' | 'u8';
export type NativeArray = Float32Array | Int32Array | Uint8Array;

export type LinkKind = 'SELF' | 'NVLINK' | 'PIX' | 'PXB' | 'PHB' | 'NODE' | 'SYS' | 'P2P' | 'NONE';

/** cpp/cuda/gpu_api.h's Topology: link kinds from NVML when it loads ('nvml'), else from CUDA attributes ('cuda'). */
export interface NativeTopology {
  gpus: { index: number; name: string; pciBusId: string; memoryBytes: number }[];
  /** One entry per unordered pair a <= b (a === b: 'SELF'). */
  links: { a: number; b: number; kind: LinkKind; p2p: boolean; perfRank?: number; nvlinks?: number; atomics?: boolean }[];
  source?: 'nvml' | 'cuda' | 'none';
}

/** One direction of the P2P self-test: p2p = the path tested (and used) is direct peer-to-peer. */
export interface P2PPairResult {
  src: number;
  dst: number;
  p2p: boolean;
  ok: boolean;
  gbps: number;
  detail: string;
}

/** The functions cpp/addon.cc exports. Handles are process-wide integers (Note [Process-wide registry]). */
export interface NativeAddon {
  backendKinds(): string[];
  deviceCount(kind: string): number;
  openDevice(kind: string, index: number): { id: number; name: string; kind: string };
  closeDevice(id: number): void;
  alloc(device: number, numel: number, dtype: NativeDType): number;
  free(handle: number): void;
  bufferInfo(handle: number): { numel: number; dtype: NativeDType; device: number };
  write(handle: number, data: NativeArray, offset?: number): void;
  read(handle: number, offset?: number, count?: number): NativeArray;
  compile(device: number, ops: Op[]): number;
  run(program: number): Promise<void>;
  runWith(program: number, writes: Array<[number, NativeArray, number?]>, reads: number[]): Promise<RunResult>;
  releaseProgram(program: number): void;
  programStatus(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number };
  nowMs(): number;
  injectBitFlip(comm: number, rank: number): void;
  allocView(parent: number, offset: number, numel: number): number;
  createComm(buffers: number[], schedule: { name: string; phases: number[][][][] }, timeoutMs: number): number;
  setCommSchedule(comm: number, schedule: { name: string; phases: number[][][][] }): void;
  releaseComm(comm: number): void;
  commStats(comm: number, rank: number): { totalMs: number; waitMs: number };
  sync(device: number): Promise<void>;
  kernelNames(device: number): string[];
  stats(): { devices: number; buffers: number; programs: number; comms: number; bufferBytes: number };
  /** impl: "openblas (dlopen <path>)", or "builtin-avx2"/"builtin-scalar" with why not OpenBLAS (cpp/cpu/gemm.h). */
  gemmInfo(): { impl: string; threads: number };
  setGemmThreads(n: number): void;
  /** GPUs and their pairwise links; empty (never throws) without the CUDA backend or without a GPU. */
  topology(): NativeTopology;
  /** Copies test patterns between every ordered pair of the given GPUs; [] for []. A corrupted pair loses P2P. */
  p2pSelfTest(indices: number[]): P2PPairResult[];
  /** Direct P2P between different GPUs on/off (TOWERLINE_P2P=0 starts it off); a no-op without CUDA. */
  setP2PEnabled(enabled: boolean): void;
}

/** What runWith resolves with: the first element of each read buffer, and the run's status. */
export interface RunResult {
  values: Float64Array;
  marks: Float64Array;
  startMs: number;
  waitMs: number;
  guardTripped: boolean;
}

let cached: NativeAddon | undefined;

/** The addon, loaded once per environment (each worker_thread loads its own copy of the module state). */
export function native(): NativeAddon {
  if (!cached) cached = loadAddon<NativeAddon>(); // Note [Addon lookup] in load.ts
  return cached;
}
