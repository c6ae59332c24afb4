// Types the compiled N-API addon's surface and loads it (load.ts finds the prebuilt or source-built file).
import type { DeviceFault, Op } from '../backend/backend.js';
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

/**
 * A fault armed for one run (runWith's 4th argument; Note [Fault injection] in cpp/fault.h): the Backend
 * interface's DeviceFault (src/backend/backend.ts). It happens at the program's first '@fault' op whose `point`
 * matches: 'stall' sleeps `ms`, 'nan' writes NaN at element `index` of the op's buffer, 'bitflip' flips the lowest
 * mantissa bit of that element, 'throw' fails the run naming the point and the device. A bad spec throws a
 * TypeError/RangeError naming the field when runWith is called.
 */
export type NativeFault = DeviceFault;

/** One buffer of a kernel's contract: its name, dtype and shape over the attributes ('(B,I)', '(1)', 'hyper'). */
export interface ContractArg {
  name: string;
  dtype: NativeDType;
  shape: string;
}

/** One kernel's entry of the contract table (Note [Kernel contracts] in cpp/kernel_contract.h). */
export interface KernelContract {
  name: string;
  group: string;
  inputs: ContractArg[];
  outputs: ContractArg[];
  /** Trailing outputs that may be left out. */
  optionalOutputs: number;
  /** 'dim': a non-negative integer; 'number': any number; 'flag': 0 or 1, default 0. */
  attrs: Array<{ name: string; kind: 'dim' | 'number' | 'flag'; note?: string }>;
  computes: string;
}

/** native().contract(): the hyper slots of cpp/hyper.h and the kernel contract table. */
export interface NativeContract {
  hyper: { lr: number; step: number; gradScale: number; used: number; size: number };
  kernels: KernelContract[];
}

/** A collective schedule as it crosses into native code (src/scheduler/schedule.ts's Schedule). */
export interface NativeSchedule {
  name: string;
  phases: number[][][][];
  collective?: 'all-reduce' | 'broadcast' | 'reduce-scatter' | 'all-gather' | 'barrier';
  /** Reduce-scatter and all-gather: [offset, length] owned by each rank, tiling the buffer in rank order. */
  shards?: Array<[number, number]>;
}

/** What createGroup is given (cpp/group/group.h's GroupOptions; src/group/options.ts validates it first). */
export interface NativeGroupOptions {
  rank: number;
  size: number;
  localRank?: number;
  localSize?: number;
  /** Towers per process: one Gloo context per slot. */
  slots?: number;
  runId: string;
  /** file:///dir or redis://host:port */
  rdzv: string;
  /** proofs[q]: rank q's run-token proof (src/group/token.ts). */
  proofs: string[];
  address?: string;
  iface?: string;
  hostname?: string;
  timeoutMs?: number;
  rendezvousTimeoutMs?: number;
}

/** groupInfo(): the group as it rendezvoused; stoppedWith is the first cause of failure ('' while healthy). */
export interface NativeGroupInfo {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  slots: number;
  runId: string;
  rdzv: string;
  timeoutMs: number;
  peers: Array<{ rank: number; localRank: number; hostname: string; address: string; pid: number }>;
  stoppedWith: string;
}

/** The functions the addon exports (cpp/napi/*.cc). Handles are process-wide integers (Note [Process-wide registry]). */
export interface NativeAddon {
  backendKinds(): string[];
  deviceCount(kind: string): number;
  /**
   * gemmThreads (default 1): this device's GEMM threads (Note [GEMM threads] in cpp/cpu/gemm.cc); only cpu devices take more than 1.
   * cpus: one CPU per compute thread, the device thread's first, then each GEMM worker's (Note [Thread placement]); cpu devices only.
   */
  openDevice(kind: string, index: number, opts?: { gemmThreads?: number; cpus?: number[] }): { id: number; name: string; kind: string; gemmThreads: number };
  closeDevice(id: number): void;
  alloc(device: number, numel: number, dtype: NativeDType): number;
  free(handle: number): void;
  bufferInfo(handle: number): { numel: number; dtype: NativeDType; device: number };
  write(handle: number, data: NativeArray, offset?: number): void;
  read(handle: number, offset?: number, count?: number): NativeArray;
  /** Resolves kernels and special ops and runs every kernel contract check: a bad call throws here. */
  compile(device: number, ops: Op[]): number;
  run(program: number): Promise<void>;
  runWith(program: number, writes: Array<[number, NativeArray, number?]>, reads: number[], fault?: NativeFault, chained?: boolean): Promise<RunResult>;
  releaseProgram(program: number): void;
  /** Registers how this environment's runWith replies are built (Note [Reply maker] in cpp/napi/async.h). */
  setReplyMaker?(make: (nValues: number, nMarks: number, startMs: number, waitMs: number, guardTripped: boolean, cancelled: boolean) => RunResult, scratch: Float64Array): void;
  programStatus(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number };
  nowMs(): number;
  allocView(parent: number, offset: number, numel: number): number;
  /** `parent`'s whole memory (another device's buffer) as a buffer of `device`; only where canShare says so. */
  allocShared(device: number, parent: number): number;
  /** Whether both devices' buffers are host memory, so `device`'s kernels may work on `parent` (Note [Shared weights]). */
  canShare(device: number, parent: number): boolean;
  createComm(buffers: number[], schedule: NativeSchedule, timeoutMs: number): number;
  /** Validated now (throws like validateSchedule); used from the communicator's next collective on. */
  setCommSchedule(comm: number, schedule: NativeSchedule): void;
  releaseComm(comm: number): void;
  /** The rank's last collective (ms, barrier waits included), and the phases and fused steps the schedule in force runs as (Note [Fused steps]). */
  commStats(comm: number, rank: number): { totalMs: number; waitMs: number; phases: number; fused: number };
  /** Throws the first reason `schedule` is not a valid all-reduce of `length` elements over `ranks` towers. */
  validateSchedule(schedule: unknown, ranks: number, length: number): void;
  sync(device: number): Promise<void>;
  kernelNames(device: number): string[];
  stats(): { devices: number; buffers: number; programs: number; comms: number; bufferBytes: number };
  /** impl: "openblas (dlopen <path>)", or "builtin-avx2"/"builtin-scalar" with why not OpenBLAS (cpp/cpu/gemm.h). */
  /** kernel: what decides the bits of a product, without paths ('builtin-avx2', 'openblas OpenBLAS 0.3.21 ... core Haswell'). */
  gemmInfo(): { impl: string; kernel: string };
  /** A device's GEMM threads from its next kernel on; the results do not change (Note [GEMM threads]). */
  setDeviceGemmThreads(device: number, n: number): void;
  deviceGemmThreads(device: number): number;
  /** Whether this platform pins threads to CPUs (Linux); elsewhere threadCpus is empty and pinThread throws. */
  affinitySupported: boolean;
  /** The CPUs this process may run on as the native side counts them (cpp/affinity.h: machineThreads), counted at load. */
  machineThreads: number;
  /** The calling thread's CPUs, ascending (Note [Thread placement] in src/tower-port/thread-placement.ts). */
  threadCpus(): number[];
  /** Restricts the calling thread to `cpus`. */
  pinThread(cpus: number[]): void;
  /** A device's compute threads' CPUs as they are: the device thread's, then each GEMM worker's (empty off the CPU). */
  deviceThreadCpus(device: number): number[][];
  /** The hyper slots and the kernel contract table. */
  contract(): NativeContract;
  /**
   * The CPU kernels' ISA path in this process ('scalar' | 'avx2' | 'avx512': TOWERLINE_ISA, else the widest) and the
   * paths this CPU has (Note [Kernel ISA] in cpp/cpu/isa.h). Throws when TOWERLINE_ISA names a path it lacks.
   */
  kernelIsa(): { isa: string; available: string[] };
  /** GPUs and their pairwise links; empty (never throws) without the CUDA backend or without a GPU. */
  topology(): NativeTopology;
  /** Copies test patterns between every ordered pair of the given GPUs; [] for []. A corrupted pair loses P2P. */
  p2pSelfTest(indices: number[]): P2PPairResult[];
  /** Direct P2P between different GPUs on/off (TOWERLINE_P2P=0 starts it off); a no-op without CUDA. */
  setP2PEnabled(enabled: boolean): void;
  /** Whether this build has process groups (Gloo), and which stores and transports. */
  groupSupport(): { available: boolean; reason?: string; gloo?: string; stores: string[]; transports: string[] };
  /** Rendezvous and connection of every context; rejects naming what is missing or wrong. */
  createGroup(options: NativeGroupOptions): Promise<number>;
  groupInfo(group: number): NativeGroupInfo;
  groupBarrier(group: number, timeoutMs?: number): Promise<void>;
  groupAllGather(group: number, bytes: Uint8Array, timeoutMs?: number): Promise<Uint8Array[]>;
  groupBroadcast(group: number, bytes: Uint8Array | null, root: number, timeoutMs?: number): Promise<Uint8Array>;
  /** Sums [offset, offset+length) of an f32 buffer over every process on slot's context, on the buffer's device thread. */
  groupAllReduce(group: number, buffer: number, slot: number, offset: number, length: number): Promise<void>;
  /** Copies [offset, offset+length) of an f32 buffer from process `root` to every other process, on `slot`'s context. */
  groupBroadcastBuffer(group: number, buffer: number, slot: number, offset: number, length: number, root: number): Promise<void>;
  /** The communicator's remote steps run on this group's slot contexts. */
  attachCommGroup(comm: number, group: number): void;
  abortGroup(group: number, why: string): void;
  closeGroup(group: number): void;
}

/** What runWith resolves with: the first element of each read buffer, and the run's status. */
export interface RunResult {
  values: Float64Array;
  marks: Float64Array;
  startMs: number;
  waitMs: number;
  guardTripped: boolean;
  /** A chained run not run: the device's previous step run tripped its guard or failed (Note [Pipelined steps]). */
  cancelled?: boolean;
}

let cached: NativeAddon | undefined;

// Note [Reply maker] (cpp/napi/async.h): runWith's reply, built here from numbers the addon writes into `scratch`
// just before the call. slice() copies them out (small arrays live on V8's heap), so no reply shares memory.
const scratch = new Float64Array(256);
function makeRunResult(nValues: number, nMarks: number, startMs: number, waitMs: number, guardTripped: boolean, cancelled: boolean): RunResult {
  const values = scratch.slice(0, nValues);
  const marks = scratch.slice(nValues, nValues + nMarks);
  return cancelled ? { values, marks, startMs, waitMs, guardTripped, cancelled } : { values, marks, startMs, waitMs, guardTripped };
}

/** The addon, loaded once per environment (each worker_thread loads its own copy of the module state). */
export function native(): NativeAddon {
  if (!cached) {
    cached = loadAddon<NativeAddon>(); // Note [Addon lookup] in load.ts
    cached.setReplyMaker?.(makeRunResult, scratch);
  }
  return cached;
}
