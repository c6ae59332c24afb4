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
 * Implemented by the native devices (`cpu`, later `cuda`) and by the float64 `ReferenceBackend` used in tests.
 * Tensor bytes stay behind the handle; only copyIn/copyOut move them, and training never calls those on gradients.
 */
export interface Backend {
  readonly name: string;
  alloc(numel: number, dtype?: DType): number;
  /** A view of `numel` elements of `parent` from element `offset` (one flat gradient arena, per-tensor views). */
  allocView(parent: number, offset: number, numel: number): number;
  free(handle: number): void;
  copyIn(handle: number, data: ArrayLike<number>, offset?: number): void;
  copyOut(handle: number): HostArray;
  compile(ops: Op[]): number;
  run(program: number): Promise<void>;
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
  ): Promise<{ values: Float64Array; marks: Float64Array; startMs: number; waitMs: number; guardTripped: boolean }>;
  /** Native devices: the last run of a program: start (ms, process-wide clock), '@mark' times, guard state. */
  status?(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number };
}
