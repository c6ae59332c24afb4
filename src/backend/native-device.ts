// A native device (cpu:N, cuda:N) seen through the Backend interface; bytes stay in native memory.
import type { Backend, DeviceFault, DType, HostArray, Op } from './backend.js';
import { native, type NativeArray, type RunResult } from '../native/addon.js';

const ARRAY_FOR: Record<DType, string> = { f32: 'Float32Array', i32: 'Int32Array', u8: 'Uint8Array' };

/** Typed arrays must match the buffer's dtype exactly; plain arrays are converted, integers checked. */
function toTyped(dtype: DType, data: ArrayLike<number>, where: string): NativeArray {
  const want = ARRAY_FOR[dtype];
  if (ArrayBuffer.isView(data)) {
    const given = data.constructor.name;
    if (given !== want) throw new TypeError(`${where}: the buffer is ${dtype}, so pass a ${want}; given a ${given}`);
    return data as NativeArray;
  }
  if (dtype === 'f32') return Float32Array.from(data);
  const lo = dtype === 'u8' ? 0 : -(2 ** 31);
  const hi = dtype === 'u8' ? 255 : 2 ** 31 - 1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isInteger(v) || v < lo || v > hi) throw new TypeError(`${where}: the buffer is ${dtype}; element ${i} is ${v}, expected an integer in [${lo}, ${hi}]`);
  }
  return dtype === 'i32' ? Int32Array.from(data) : Uint8Array.from(data);
}

export class NativeDevice implements Backend {
  readonly name: string;
  readonly kind: string;
  readonly id: number;
  private closed = false;
  private readonly dtypes = new Map<number, DType>();

  private constructor(info: { id: number; name: string; kind: string }) {
    this.id = info.id;
    this.name = info.name;
    this.kind = info.kind;
  }

  /**
   * Opens `kind:index` (e.g. 'cpu', 0). Throws naming the kind and the index when it does not exist. `gemmThreads`
   * (default 1): the threads this device's GEMMs use; results are the same bits at any count (Note [GEMM threads]).
   * `cpus`: one CPU per compute thread, the device thread's first (Note [Thread placement]); absent: not pinned.
   */
  static open(kind: string, index: number, opts: { gemmThreads?: number; cpus?: number[] } = {}): NativeDevice {
    return new NativeDevice(native().openDevice(kind, index, opts));
  }

  /** The threads this device's GEMMs use. */
  get gemmThreads(): number {
    return native().deviceGemmThreads(this.id);
  }

  set gemmThreads(n: number) {
    native().setDeviceGemmThreads(this.id, n);
  }

  alloc(numel: number, dtype: DType = 'f32'): number {
    const h = native().alloc(this.id, numel, dtype);
    this.dtypes.set(h, dtype);
    return h;
  }

  allocView(parent: number, offset: number, numel: number): number {
    const h = native().allocView(parent, offset, numel);
    this.dtypes.set(h, this.dtypeOf(parent));
    return h;
  }

  /** `parent` (another host-memory device's buffer) as this device's buffer, or undefined where that is not possible. */
  share(parent: number): number | undefined {
    if (!native().canShare(this.id, parent)) return undefined;
    const h = native().allocShared(this.id, parent);
    this.dtypes.set(h, this.dtypeOf(parent));
    return h;
  }

  /** The last (or current) run of a program: start time, '@mark' times, whether a '@guard' stopped it. */
  status(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number } {
    return native().programStatus(program);
  }

  free(handle: number): void {
    native().free(handle);
    this.dtypes.delete(handle);
  }

  private dtypeOf(handle: number): DType {
    return this.dtypes.get(handle) ?? native().bufferInfo(handle).dtype;
  }

  copyIn(handle: number, data: ArrayLike<number>, offset = 0): void {
    native().write(handle, toTyped(this.dtypeOf(handle), data, `copyIn to buffer #${handle} on ${this.name}`), offset);
  }

  copyOut(handle: number): HostArray {
    return native().read(handle);
  }

  compile(ops: Op[]): number {
    return native().compile(this.id, ops);
  }

  /** Runs a program; with a fault, through runWith (the one place a fault is armed). */
  async run(program: number, fault?: DeviceFault): Promise<void> {
    if (fault) await this.runWith(program, [], [], fault);
    else await native().run(program);
  }

  /** Writes, run and reads in one hand-off (Note [One hand-off per step]); `fault` is armed for this run only. */
  runWith(program: number, writes: Array<[number, NativeArray]>, reads: number[], fault?: DeviceFault, chained?: boolean): Promise<RunResult> {
    return native().runWith(program, writes, reads, fault, chained);
  }

  async runOps(ops: Op[]): Promise<void> {
    const p = this.compile(ops);
    try {
      await this.run(p);
    } finally {
      this.releaseProgram(p);
    }
  }

  releaseProgram(program: number): void {
    native().releaseProgram(program);
  }

  sync(): Promise<void> {
    return native().sync(this.id);
  }

  kernelNames(): string[] {
    return native().kernelNames(this.id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    native().closeDevice(this.id);
  }
}
