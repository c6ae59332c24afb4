// The float64 reference kernels behind the same handle-based Backend interface as the native devices.
import type { Backend, DType, HostArray, Op } from '../backend/backend.js';
import { referenceKernels, referenceSignatures, type RefTensor } from './kernels.js';

interface Buffer {
  readonly dtype: DType;
  readonly data: RefTensor;
}

interface CompiledOp {
  readonly op: Op;
  readonly kernel: (typeof referenceKernels)[string];
}

function makeTensor(numel: number, dtype: DType): RefTensor {
  switch (dtype) {
    case 'f32': return new Float64Array(numel);
    case 'i32': return new Int32Array(numel);
    case 'u8': return new Uint8Array(numel);
  }
}

export class ReferenceBackend implements Backend {
  readonly name: string;
  private readonly buffers = new Map<number, Buffer>();
  private readonly programs = new Map<number, CompiledOp[]>();
  // Handles and program ids are never reused, so a stale id fails loudly instead of aliasing a new buffer.
  private nextHandle = 1;
  private nextProgram = 1;
  private closed = false;

  constructor(name = 'ref') {
    this.name = name;
  }

  alloc(numel: number, dtype: DType = 'f32'): number {
    this.checkOpen('alloc');
    if (!Number.isInteger(numel) || numel < 0) throw new Error(`${this.name}: alloc: numel must be a non-negative integer, got ${numel}`);
    const h = this.nextHandle++;
    this.buffers.set(h, { dtype, data: makeTensor(numel, dtype) });
    return h;
  }

  /** A view of `numel` elements of `parent` from element `offset`: writes through either handle are shared. */
  allocView(parent: number, offset: number, numel: number): number {
    const buf = this.buffer(parent, 'allocView');
    if (!Number.isInteger(offset) || !Number.isInteger(numel) || offset < 0 || numel < 1 || offset + numel > buf.data.length)
      throw new Error(`${this.name}: allocView: [${offset}, ${offset + numel}) is outside handle ${parent} of ${buf.data.length} elements`);
    const h = this.nextHandle++;
    this.buffers.set(h, { dtype: buf.dtype, data: buf.data.subarray(offset, offset + numel) });
    return h;
  }

  free(handle: number): void {
    this.buffer(handle, 'free');
    this.buffers.delete(handle);
  }

  copyIn(handle: number, data: ArrayLike<number>, offset = 0): void {
    const buf = this.buffer(handle, 'copyIn');
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > buf.data.length) {
      throw new Error(`${this.name}: copyIn: ${data.length} elements at offset ${offset} do not fit handle ${handle} of ${buf.data.length} elements`);
    }
    for (let k = 0; k < data.length; k++) buf.data[offset + k] = data[k];
  }

  copyOut(handle: number): HostArray {
    return this.buffer(handle, 'copyOut').data.slice();
  }

  /** The live array behind a handle, for tests that want to inspect without copying. */
  view(handle: number): RefTensor {
    return this.buffer(handle, 'view').data;
  }

  compile(ops: Op[]): number {
    this.checkOpen('compile');
    // Runtime ops ('@mark' timings, '@guard', '@collective', fault injection) belong to the native executor;
    // the reference checks numerics only, so it drops them.
    const compiled = ops.filter((op) => !op.kernel.startsWith('@')).map((op, k) => {
      const where = `${this.name}: compile: op ${k} (${op.kernel})`;
      const kernel = referenceKernels[op.kernel];
      const sig = referenceSignatures[op.kernel];
      if (!kernel || !sig) throw new Error(`${this.name}: compile: op ${k}: unknown kernel '${op.kernel}'`);
      const required = sig.outputs.length - (sig.optionalOutputs ?? 0);
      if (op.inputs.length !== sig.inputs.length) {
        throw new Error(`${where}: takes ${sig.inputs.length} inputs, got ${op.inputs.length}`);
      }
      if (op.outputs.length < required || op.outputs.length > sig.outputs.length) {
        throw new Error(`${where}: takes ${required}..${sig.outputs.length} outputs, got ${op.outputs.length}`);
      }
      const check = (h: number, [arg, dt]: readonly [string, DType]): void => {
        const buf = this.buffers.get(h);
        if (!buf) throw new Error(`${where}: ${arg} is not a live handle (${h})`);
        if (buf.dtype !== dt) throw new Error(`${where}: ${arg} (handle ${h}) must be ${dt}, got ${buf.dtype}`);
      };
      op.inputs.forEach((h, i) => check(h, sig.inputs[i]));
      op.outputs.forEach((h, i) => check(h, sig.outputs[i]));
      // Copy the op so later edits to the caller's array do not change the program.
      const frozen: Op = { kernel: op.kernel, inputs: [...op.inputs], outputs: [...op.outputs], attrs: { ...op.attrs } };
      return { op: frozen, kernel };
    });
    const id = this.nextProgram++;
    this.programs.set(id, compiled);
    return id;
  }

  /** Runs a program synchronously: for finite-difference loops that run it thousands of times. */
  runSync(program: number): void {
    this.checkOpen('run');
    const ops = this.programs.get(program);
    if (!ops) throw new Error(`${this.name}: run: unknown program ${program}`);
    ops.forEach(({ op, kernel }, k) => {
      const get = (h: number): RefTensor => {
        const buf = this.buffers.get(h);
        if (!buf) throw new Error(`${this.name}: run: op ${k} (${op.kernel}): handle ${h} was freed`);
        return buf.data;
      };
      kernel(op.inputs.map(get), op.outputs.map(get), op.attrs ?? {});
    });
  }

  async run(program: number): Promise<void> {
    this.runSync(program);
  }

  async runOps(ops: Op[]): Promise<void> {
    const p = this.compile(ops);
    try {
      this.runSync(p);
    } finally {
      this.releaseProgram(p);
    }
  }

  releaseProgram(program: number): void {
    if (!this.programs.delete(program)) throw new Error(`${this.name}: releaseProgram: unknown program ${program}`);
  }

  async sync(): Promise<void> {
    // Everything ran synchronously already.
  }

  kernelNames(): string[] {
    return Object.keys(referenceKernels).sort();
  }

  async close(): Promise<void> {
    this.buffers.clear();
    this.programs.clear();
    this.closed = true;
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new Error(`${this.name}: ${what}: backend is closed`);
  }

  private buffer(handle: number, what: string): Buffer {
    this.checkOpen(what);
    const buf = this.buffers.get(handle);
    if (!buf) throw new Error(`${this.name}: ${what}: unknown handle ${handle}`);
    return buf;
  }
}
