// The one Backend interface seen from TypeScript: buffers by integer handle, copies, programs of kernels by name.
export type DType = 'f32' | 'i32' | 'u8';

/** One kernel invocation: the kernel's name, buffer handles, and numeric attributes (see docs/kernels.md). */
export interface Op {
  kernel: string;
  inputs: number[];
  outputs: number[];
  attrs?: Record<string, number>;
}

export type HostArray = Float64Array | Float32Array | Int32Array | Uint8Array;

/**
 * One fault armed for one run at the '@fault' op whose attrs.point equals `point` (src/model/fault.ts numbers
 * the points): 'stall' sleeps `ms`; 'nan' writes NaN at element `index` of the op's output; 'bitflip' flips that
 * element's lowest mantissa bit; 'throw' fails the run there. Unarmed, '@fault' ops do nothing.
 */
export interface DeviceFault {
  point: number;
  kind: 'stall' | 'nan' | 'bitflip' | 'throw';
  ms?: number;
  index?: number;
}

/**
 * Implemented by the native devices (`cpu`, later `cuda`) and by the float64 `ReferenceBackend` used in tests.
 * Tensor bytes stay behind the handle; only copyIn/copyOut move them, and training never calls those on gradients.
 */
export interface Backend {
  readonly name: string;
  alloc(numel: number, dtype?: DType): number;
  /** A view of `numel` elements of `parent` from element `offset` (one flat gradient arena, per-tensor views). */
  allocView(parent: number, offset: number, numel: number): number;
  /**
   * Native devices: another device's buffer `parent` as this device's own (its whole memory, shared, not copied), or
   * undefined where the two devices' memory cannot be shared (Note [Shared weights] in src/model/shard-plan.ts).
   */
  share?(parent: number): number | undefined;
  free(handle: number): void;
  copyIn(handle: number, data: ArrayLike<number>, offset?: number): void;
  copyOut(handle: number): HostArray;
  compile(ops: Op[]): number;
  /** Runs a compiled program; a backend that implements '@fault' arms `fault` for this run only. */
  run(program: number, fault?: DeviceFault): Promise<void>;
  runOps(ops: Op[]): Promise<void>;
  releaseProgram(program: number): void;
  sync(): Promise<void>;
  kernelNames(): string[];
  close(): Promise<void>;
  /** Native devices: writes, run and reads of scalars in one hand-off (Note [One hand-off per step]). */
  runWith?(
    program: number,
    writes: Array<[number, Float32Array | Int32Array | Uint8Array]>,
    reads: number[],
    fault?: DeviceFault,
    /** Queued behind an unconsumed step: not run if the device's previous step run tripped or failed (Note [Pipelined steps]). */
    chained?: boolean,
  ): Promise<{ values: Float64Array; marks: Float64Array; startMs: number; waitMs: number; guardTripped: boolean; cancelled?: boolean }>;
  /** Native devices: the last run of a program: start (ms, process-wide clock), '@mark' times, guard state. */
  status?(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number };
}
