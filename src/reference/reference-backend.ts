// The float64 reference kernels behind the same handle-based Backend interface as the native devices.
import type { Backend, DType, HostArray, Op } from '../backend/backend.js';
import { referenceKernels, referenceSignatures, type RefTensor } from './kernels.js';
import { referenceCollective } from './reference-collective.js';
import type { FaultSpec } from '../tower-port/protocol.js';

interface Buffer {
  readonly dtype: DType;
  readonly data: RefTensor;
}

/** A kernel op, or one of the special ops of contract section 2 ('@mark', '@guard', '@collective', '@fault'). */
type CompiledOp =
  | { readonly special?: undefined; readonly op: Op; readonly kernel: (typeof referenceKernels)[string] }
  | { readonly special: 'mark'; readonly op: Op; readonly mark: number }
  | { readonly special: 'guard'; readonly op: Op }
  | { readonly special: 'collective'; readonly op: Op; readonly comm: number; readonly rank: number }
  | { readonly special: 'fault'; readonly op: Op; readonly point: number };

interface Program {
  readonly ops: CompiledOp[];
  readonly marks: number;
  readonly hasCollective: boolean;
  status: { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number };
}

/** What runWith resolves with (the native RunResult's shape). */
export interface ReferenceRunResult {
  values: Float64Array;
  marks: Float64Array;
  startMs: number;
  waitMs: number;
  guardTripped: boolean;
  cancelled?: boolean;
}

type Writes = Array<[number, ArrayLike<number>]>;

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
  private readonly programs = new Map<number, Program>();
  // Handles and program ids are never reused, so a stale id fails loudly instead of aliasing a new buffer.
  private nextHandle = 1;
  private nextProgram = 1;
  private closed = false;
  // runWith runs in call order, one at a time, like a native device thread's queue (Note [Pipelined steps]).
  private tail: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private lastRun: 'ok' | 'tripped' | 'failed' = 'ok';

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
    let marks = 0;
    const compiled = ops.map((op, k): CompiledOp => {
      const where = `${this.name}: compile: op ${k} (${op.kernel})`;
      if (op.kernel.startsWith('@')) return this.compileSpecial({ kernel: op.kernel, inputs: [...op.inputs], outputs: [...op.outputs], attrs: { ...op.attrs } }, where, () => marks++);
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
      op.inputs.forEach((h, i) => this.checkArg(where, h, sig.inputs[i]!));
      op.outputs.forEach((h, i) => this.checkArg(where, h, sig.outputs[i]!));
      // Copy the op so later edits to the caller's array do not change the program.
      const frozen: Op = { kernel: op.kernel, inputs: [...op.inputs], outputs: [...op.outputs], attrs: { ...op.attrs } };
      return { op: frozen, kernel };
    });
    const id = this.nextProgram++;
    const status = { marks: new Float64Array(marks).fill(-1), startMs: 0, guardTripped: false, currentOp: -1 };
    this.programs.set(id, { ops: compiled, marks, hasCollective: compiled.some((c) => c.special === 'collective'), status });
    return id;
  }

  private checkArg(where: string, h: number, [arg, dt]: readonly [string, DType]): void {
    const buf = this.buffers.get(h);
    if (!buf) throw new Error(`${where}: ${arg} is not a live handle (${h})`);
    if (buf.dtype !== dt) throw new Error(`${where}: ${arg} (handle ${h}) must be ${dt}, got ${buf.dtype}`);
  }

  // The special ops as the native executor runs them: '@mark' records the time since the run started, '@guard'
  // ends the run when its input's first value is not finite (Note [Non-finite guard]), '@collective' waits for the
  // other ranks of an in-process collective (reference-collective.ts), '@fault' does nothing unless armed.
  private compileSpecial(op: Op, where: string, nextMark: () => number): CompiledOp {
    const attr = (name: string): number => {
      const v = op.attrs?.[name];
      if (v === undefined || !Number.isInteger(v) || v < 0) throw new Error(`${where}: attribute ${name} must be a non-negative integer, got ${v}`);
      return v;
    };
    switch (op.kernel) {
      case '@mark':
        return { special: 'mark', op, mark: nextMark() };
      case '@guard':
        if (op.inputs.length !== 1) throw new Error(`${where}: takes 1 input (the value to check), got ${op.inputs.length}`);
        this.checkArg(where, op.inputs[0]!, ['x', 'f32']);
        return { special: 'guard', op };
      case '@collective': {
        const comm = referenceCollective(attr('comm'));
        const rank = attr('rank');
        if (rank >= comm.size) throw new Error(`${where}: rank ${rank} outside [0, ${comm.size})`);
        return { special: 'collective', op, comm: comm.id, rank };
      }
      case '@fault':
        if (op.outputs.length !== 1) throw new Error(`${where}: takes 1 output (the buffer a fault writes into), got ${op.outputs.length}`);
        this.checkArg(where, op.outputs[0]!, ['buf', 'f32']);
        if (attr('point') > 15) throw new Error(`${where}: point must be in 0..15, got ${op.attrs?.['point']}`);
        return { special: 'fault', op, point: attr('point') };
      default:
        throw new Error(`${where}: unknown special op '${op.kernel}' (known: @mark, @guard, @collective, @fault)`);
    }
  }

  private program(id: number, what: string): Program {
    this.checkOpen(what);
    const p = this.programs.get(id);
    if (!p) throw new Error(`${this.name}: ${what}: unknown program ${id}`);
    return p;
  }

  private live(h: number, k: number, op: Op): RefTensor {
    const buf = this.buffers.get(h);
    if (!buf) throw new Error(`${this.name}: run: op ${k} (${op.kernel}): handle ${h} was freed`);
    return buf.data;
  }

  /** Runs one op; returns false when a '@guard' ends the run. Collectives and stalls are asynchronous (see run). */
  private runOp(p: Program, k: number, t0: number): boolean {
    const c = p.ops[k]!;
    if (c.special === undefined) {
      c.kernel(c.op.inputs.map((h) => this.live(h, k, c.op)), c.op.outputs.map((h) => this.live(h, k, c.op)), c.op.attrs ?? {});
    } else if (c.special === 'mark') {
      p.status.marks[c.mark] = performance.now() - t0;
    } else if (c.special === 'guard' && !Number.isFinite(this.live(c.op.inputs[0]!, k, c.op)[0]!)) {
      p.status.guardTripped = true;
      return false;
    }
    return true;
  }

  /** Runs a program synchronously: for finite-difference loops that run it thousands of times (no collectives). */
  runSync(program: number): void {
    const p = this.program(program, 'run');
    if (p.hasCollective) throw new Error(`${this.name}: runSync: program ${program} has a '@collective'; use run() or runWith()`);
    const t0 = this.begin(p);
    try {
      for (let k = 0; k < p.ops.length; k++) {
        p.status.currentOp = k;
        if (!this.runOp(p, k, t0)) break;
      }
    } finally {
      p.status.currentOp = -1;
    }
  }

  private begin(p: Program): number {
    const t0 = performance.now();
    p.status = { marks: new Float64Array(p.marks).fill(-1), startMs: t0, guardTripped: false, currentOp: -1 };
    return t0;
  }

  /** Runs a program; `fault` arms one '@fault' point for this run only (contract section 1). */
  async run(program: number, fault?: FaultSpec): Promise<void> {
    await this.runWith(program, [], [], fault);
  }

  /**
   * The native runWith's contract (Note [One hand-off per step]): writes, the program, then the first element of
   * each read buffer, the marks, the guard state and the collective wait. `fault` arms one '@fault' point for this
   * run only (contract section 1); a bad fault spec throws here, before anything runs.
   */
  runWith(program: number, writes: Writes, reads: number[], fault?: FaultSpec, chained = false): Promise<ReferenceRunResult> {
    const p = this.program(program, 'runWith');
    if (fault !== undefined) this.checkFault(p, fault);
    for (const [h] of writes) this.buffer(h, 'runWith');
    for (const h of reads) this.buffer(h, 'runWith');
    // Queued behind a run in flight: the writes are copied now (the caller may reuse its arrays, as natively).
    const immediate = this.inFlight++ === 0;
    const staged = immediate ? writes : writes.map(([h, v]): [number, number[]] => [h, Array.from(v)]); // copied here, not when it runs
    const run = immediate ? this.runStep(p, staged, reads, fault, chained) : this.tail.then(() => this.runStep(p, staged, reads, fault, chained));
    this.tail = run.then(
      () => void this.inFlight--,
      () => void this.inFlight--,
    );
    return run;
  }

  /** One run, cancelled when chained behind a step run that tripped its guard or failed (Note [Pipelined steps]). */
  private async runStep(p: Program, writes: Writes, reads: number[], fault: FaultSpec | undefined, chained: boolean): Promise<ReferenceRunResult> {
    if (chained && this.lastRun !== 'ok') return { values: new Float64Array(0), marks: new Float64Array(0), startMs: 0, waitMs: 0, guardTripped: false, cancelled: true };
    this.lastRun = 'failed';
    const r = await this.execute(p, writes, reads, fault);
    this.lastRun = r.guardTripped ? 'tripped' : 'ok';
    return r;
  }

  private async execute(p: Program, writes: Writes, reads: number[], fault: FaultSpec | undefined): Promise<ReferenceRunResult> {
    for (const [h, v] of writes) this.copyIn(h, v);
    const t0 = this.begin(p);
    let waitMs = 0;
    try {
      for (let k = 0; k < p.ops.length; k++) {
        p.status.currentOp = k;
        const c = p.ops[k]!;
        if (c.special === 'collective') waitMs += await referenceCollective(c.comm).arrive(c.rank);
        else if (c.special === 'fault') {
          if (fault?.point === c.point) await this.fire(fault, c, k);
        } else if (!this.runOp(p, k, t0)) break;
      }
    } catch (e) {
      // Peers blocked in a collective with this tower must not wait for a step that will never come.
      const why = `tower on ${this.name} failed: ${e instanceof Error ? e.message : String(e)}`;
      for (const c of p.ops) if (c.special === 'collective') referenceCollective(c.comm).abort(why);
      throw e;
    } finally {
      p.status.currentOp = -1;
    }
    const values = Float64Array.from(reads, (h) => this.buffer(h, 'runWith').data[0] ?? NaN);
    return { values, marks: p.status.marks.slice(), startMs: p.status.startMs, waitMs, guardTripped: p.status.guardTripped };
  }

  private checkFault(p: Program, f: FaultSpec): void {
    if (!['stall', 'nan', 'bitflip', 'throw'].includes(f.kind)) throw new TypeError(`fault.kind must be 'stall', 'nan', 'bitflip' or 'throw', given ${JSON.stringify(f.kind)}`);
    if (!Number.isInteger(f.point) || f.point < 0 || f.point > 15) throw new RangeError(`fault.point must be an integer in 0..15, given ${f.point}`);
    const op = p.ops.find((c) => c.special === 'fault' && c.point === f.point);
    if (!op) throw new RangeError(`fault.point ${f.point}: this program has no '@fault' op at that point`);
    if (f.kind === 'stall' && !(typeof f.ms === 'number' && Number.isFinite(f.ms) && f.ms >= 0)) throw new RangeError(`fault.ms must be a finite number >= 0 for a stall, given ${f.ms}`);
    if (f.kind === 'nan' || f.kind === 'bitflip') {
      const n = this.buffer(op.op.outputs[0]!, 'runWith').data.length;
      if (!(Number.isInteger(f.index) && f.index! >= 0 && f.index! < n)) throw new RangeError(`fault.index must be an integer in [0, ${n}) (the fault point's buffer), given ${f.index}`);
    }
  }

  private async fire(f: FaultSpec, c: CompiledOp, k: number): Promise<void> {
    const buf = this.live(c.op.outputs[0]!, k, c.op) as Float64Array;
    switch (f.kind) {
      case 'stall':
        await new Promise((r) => setTimeout(r, f.ms));
        return;
      case 'nan':
        buf[f.index!] = NaN;
        return;
      case 'bitflip': {
        // The float32 value's lowest mantissa bit, as on a native device. The reference keeps f32 buffers in
        // float64, so the value moves by exactly what that bit is worth (one float32 ulp), and no more precision
        // is lost: the corruption stays visible through the float32 rounding of the replica hash.
        const bits = new Uint32Array(1);
        const f32 = new Float32Array(bits.buffer);
        f32[0] = buf[f.index!]!;
        const before = f32[0]!;
        bits[0] = bits[0]! ^ 1;
        buf[f.index!] = buf[f.index!]! + (f32[0]! - before);
        return;
      }
      case 'throw':
        throw new Error(`injected fault at point ${f.point} on ${this.name}`);
    }
  }

  /** The last (or current) run of a program: start (performance.now() ms), '@mark' times, guard state, op running. */
  status(program: number): { marks: Float64Array; startMs: number; guardTripped: boolean; currentOp: number } {
    const st = this.program(program, 'status').status;
    return { marks: st.marks.slice(), startMs: st.startMs, guardTripped: st.guardTripped, currentOp: st.currentOp };
  }

  /** Compiles, runs and releases a one-off program (collectives included). */
  runOps(ops: Op[]): Promise<void> {
    const id = this.compile(ops);
    return this.execute(this.program(id, 'runOps'), [], [], undefined).then(
      () => this.releaseProgram(id),
      (e: unknown) => {
        this.releaseProgram(id);
        throw e;
      },
    );
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
