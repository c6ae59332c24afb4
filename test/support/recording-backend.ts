// A Backend that executes nothing and records every op list it is given: for checking what a tower compiles.
import type { Backend, DeviceFault, DType, HostArray, Op } from '../../src/backend/backend.js';

interface Buf {
  dtype: DType;
  numel: number;
  view?: { parent: number; offset: number };
}

export class RecordingBackend implements Backend {
  readonly name = 'rec';
  /** Every compiled (or runOps) op list, in order. */
  readonly lists: Op[][] = [];
  /** Every run: the program (index into lists + 1) and the fault armed for it. */
  readonly runs: Array<{ program: number; fault?: DeviceFault }> = [];
  private readonly bufs = new Map<number, Buf>();
  private next = 1;
  private nextProgram = 1;

  alloc(numel: number, dtype: DType = 'f32'): number {
    this.bufs.set(this.next, { dtype, numel });
    return this.next++;
  }
  allocView(parent: number, offset: number, numel: number): number {
    const p = this.bufs.get(parent);
    if (!p || offset < 0 || offset + numel > p.numel) throw new Error(`rec: bad view [${offset}, ${offset + numel}) of #${parent}`);
    this.bufs.set(this.next, { dtype: p.dtype, numel, view: { parent, offset } });
    return this.next++;
  }
  free(handle: number): void {
    if (!this.bufs.delete(handle)) throw new Error(`rec: free of unknown #${handle}`);
  }
  copyIn(handle: number): void {
    if (!this.bufs.has(handle)) throw new Error(`rec: copyIn to unknown #${handle}`);
  }
  copyOut(handle: number): HostArray {
    const b = this.bufs.get(handle);
    if (!b) throw new Error(`rec: copyOut of unknown #${handle}`);
    return b.dtype === 'f32' ? new Float32Array(b.numel) : b.dtype === 'i32' ? new Int32Array(b.numel) : new Uint8Array(b.numel);
  }
  compile(ops: Op[]): number {
    this.lists.push(ops.map((o) => ({ ...o, inputs: [...o.inputs], outputs: [...o.outputs], ...(o.attrs ? { attrs: { ...o.attrs } } : {}) })));
    return this.nextProgram++;
  }
  async run(program: number, fault?: DeviceFault): Promise<void> {
    this.runs.push({ program, ...(fault ? { fault } : {}) });
  }
  async runOps(ops: Op[]): Promise<void> {
    this.compile(ops);
  }
  releaseProgram(): void {}
  async sync(): Promise<void> {}
  kernelNames(): string[] {
    return [];
  }
  async close(): Promise<void> {}
  /** Buffers still allocated (a disposed tower leaves none). */
  live(): number {
    return this.bufs.size;
  }

  /**
   * The recorded lists as text, handles renamed in order of first use (b0, b1, ...), with a table of what each name
   * is ('b0 f32[10]'; a view 'b3 = b1[+4:6]'): two towers that allocate in another order but compute the same
   * dataflow give the same snapshot. One line per op: 'kernel in:b1,b2 out:b3 {attrs}'; `keep` leaves ops out.
   */
  snapshot(keep: (op: Op) => boolean = () => true): { buffers: string[]; programs: string[][] } {
    const ids = new Map<number, string>();
    const buffers: string[] = [];
    const id = (h: number): string => {
      const known = ids.get(h);
      if (known !== undefined) return known;
      const b = this.bufs.get(h);
      if (!b) throw new Error(`rec: an op uses unknown #${h}`);
      const parent = b.view ? id(b.view.parent) : undefined;
      const n = `b${ids.size}`;
      ids.set(h, n);
      buffers.push(b.view ? `${n} = ${parent}[+${b.view.offset}:${b.numel}]` : `${n} ${b.dtype}[${b.numel}]`);
      return n;
    };
    const line = (o: Op): string =>
      `${o.kernel} in:${o.inputs.map(id).join(',')} out:${o.outputs.map(id).join(',')}${o.attrs ? ` ${JSON.stringify(o.attrs)}` : ''}`;
    const programs = this.lists.map((ops) => ops.filter(keep).map(line));
    return { buffers, programs };
  }
}
