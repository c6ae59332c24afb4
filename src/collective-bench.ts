// All-reduce timing among CPU towers in this process: the harness behind `towerline bench allreduce` and bench/allreduce.ts.
//
// Harness: N cpu devices opened in this process, one f32 buffer of the message size on each, one communicator per
// algorithm over those buffers and, per device, a compiled program holding only the '@collective' op; one all-reduce
// is `await Promise.all(programs.map(run))`. Every configuration is checked once against a JS-computed sum before it
// is timed, so a broken collective cannot report a bandwidth.
import { native } from './native/addon.js';
import { ringSchedule } from './scheduler/ring.js';
import { treeSchedule } from './scheduler/tree.js';
import { naiveSchedule } from './scheduler/naive.js';
import type { Schedule, ScheduleRequest } from './scheduler/schedule.js';

export const ALGORITHMS: Record<string, (req: ScheduleRequest) => Schedule> = { ring: ringSchedule, tree: treeSchedule, naive: naiveSchedule };

const TIMEOUT_MS = 60_000;

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Times `iters` back-to-back calls of `once`; returns ms per call. */
export async function timeIters(once: () => Promise<unknown>, iters: number): Promise<number> {
  const t0 = nowMs();
  for (let i = 0; i < iters; i++) await once();
  return (nowMs() - t0) / iters;
}

/** The CPU towers cpu:0..count-1, opened in this process. */
export class CpuTowers {
  readonly devices: number[] = [];
  constructor(count: number) {
    for (let i = 0; i < count; i++) this.devices.push(native().openDevice('cpu', i).id);
  }
  close(): void {
    for (const d of this.devices) native().closeDevice(d);
  }
}

/** One algorithm's communicator over a setup's buffers and its '@collective' program per tower. */
export interface AllreduceGroup {
  algorithm: string;
  comm: number;
  progs: number[];
  /** One all-reduce: every tower's program, run together. */
  once(): Promise<unknown>;
}

/** One (towers, message size) configuration: a buffer per tower and one group per algorithm over those buffers. */
export class AllreduceSetup {
  readonly bufs: number[];
  readonly groups: AllreduceGroup[] = [];

  /** length: f32 elements per buffer; the first `n` towers take part. */
  constructor(towers: CpuTowers, readonly n: number, readonly length: number, algorithms: string[]) {
    const nat = native();
    const devs = towers.devices.slice(0, n);
    this.bufs = devs.map((d) => nat.alloc(d, length, 'f32'));
    try {
      for (const algorithm of algorithms) {
        const plan = ALGORITHMS[algorithm];
        if (!plan) throw new Error(`unknown algorithm '${algorithm}'; use ${Object.keys(ALGORITHMS).join(', ')}`);
        const comm = nat.createComm(this.bufs, plan({ ranks: n, length }), TIMEOUT_MS);
        const progs: number[] = [];
        this.groups.push({ algorithm, comm, progs, once: () => Promise.all(progs.map((p) => nat.run(p))) });
        devs.forEach((d, r) => progs.push(nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: r } }])));
      }
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /**
   * Correctness, once per configuration: writes `inputs` (one array per tower, positive values), runs one all-reduce
   * and checks that every buffer equals the sum within float-order tolerance and that all replicas are bit-identical
   * (the schedules copy one reduction everywhere).
   */
  async verify(g: AllreduceGroup, inputs: Float32Array[]): Promise<void> {
    const nat = native();
    const { n, length } = this;
    const exact = new Float64Array(length);
    for (const x of inputs) for (let i = 0; i < length; i++) exact[i] += x[i]!;
    const absSum = exact;  // all values are positive: sum |x| = sum x
    const eps = 2 ** -23;
    this.bufs.forEach((b, r) => nat.write(b, inputs[r]!));
    await g.once();
    const outs = this.bufs.map((b) => nat.read(b) as Float32Array);
    const what = `allreduce ${g.algorithm}, ${n} towers, ${length * 4} B`;
    for (let i = 0; i < length; i++) {
      const got = outs[0]![i]!;
      if (!(Math.abs(got - exact[i]!) <= n * eps * absSum[i]!))
        throw new Error(`${what}: element ${i} is ${got}, expected ${exact[i]} (sum of ${inputs.map((x) => x[i]).join(' + ')})`);
      for (let r = 1; r < n; r++)
        if (!Object.is(outs[r]![i], got))
          throw new Error(`${what}: rank ${r} holds ${outs[r]![i]} at element ${i}, rank 0 holds ${got} (replicas must be bit-identical)`);
    }
  }

  /** The share of the collective's time the ranks spent at barriers (commStats of the last all-reduce). */
  waitFraction(g: AllreduceGroup): number {
    let total = 0;
    let wait = 0;
    for (let r = 0; r < this.n; r++) {
      const s = native().commStats(g.comm, r);
      total += s.totalMs;
      wait += s.waitMs;
    }
    return total > 0 ? wait / total : 0;
  }

  release(): void {
    const nat = native();
    for (const g of this.groups) {
      for (const p of g.progs) nat.releaseProgram(p);
      nat.releaseComm(g.comm);
    }
    this.groups.length = 0;
    for (const b of this.bufs) nat.free(b);
    this.bufs.length = 0;
  }
}

export interface AllreduceResult {
  algorithm: string;
  towers: number;
  bytes: number;
  /** Median seconds per all-reduce. */
  seconds: number;
  algbw: number;  // bytes / s
  busbw: number;  // algbw · 2(n−1)/n, nccl-tests' definition
}

/** Times one algorithm at one size: the median of `iters` single all-reduces (by default enough for ~0.2 GB moved). */
export async function measureAllreduce(algorithm: string, towers: number, bytes: number, iters?: number): Promise<AllreduceResult> {
  if (!ALGORITHMS[algorithm]) throw new Error(`unknown algorithm '${algorithm}'; use ${Object.keys(ALGORITHMS).join(', ')}`);
  const length = Math.max(1, Math.floor(bytes / 4));
  const t = new CpuTowers(towers);
  try {
    const setup = new AllreduceSetup(t, towers, length, [algorithm]);
    try {
      const g = setup.groups[0]!;
      // Tower r holds r + 1 everywhere: the sum n(n+1)/2 is exact. Later runs keep growing (any value is fine).
      await setup.verify(g, Array.from({ length: towers }, (_, r) => new Float32Array(length).fill(r + 1)));
      const reps = iters ?? Math.max(5, Math.min(200, Math.floor(2e8 / Math.max(bytes, 1))));
      const times: number[] = [];
      for (let i = 0; i < reps; i++) times.push((await timeIters(() => g.once(), 1)) / 1000);
      times.sort((a, b) => a - b);
      const seconds = times[Math.floor(times.length / 2)]!;
      const algbw = (length * 4) / seconds;
      return { algorithm, towers, bytes: length * 4, seconds, algbw, busbw: (algbw * 2 * (towers - 1)) / towers };
    } finally {
      setup.release();
    }
  } finally {
    t.close();
  }
}

/** An nccl-tests style table: size, then time, algbw and busbw per algorithm. */
export async function allreduceTable(towers: number, maxBytes: number): Promise<string> {
  const algs = Object.keys(ALGORITHMS);
  const lines = [
    `all-reduce among ${towers} CPU towers (fp32, sum); busbw = algbw * 2(n-1)/n`,
    ['size (B)'.padStart(12), ...algs.map((a) => `${a}: time(us)  algbw(GB/s) busbw(GB/s)`.padStart(44))].join(''),
  ];
  for (let bytes = 1024; bytes <= maxBytes; bytes *= 4) {
    const cells: string[] = [];
    for (const a of algs) {
      const r = await measureAllreduce(a, towers, bytes);
      cells.push(`${(r.seconds * 1e6).toFixed(1).padStart(18)} ${(r.algbw / 1e9).toFixed(2).padStart(12)} ${(r.busbw / 1e9).toFixed(2).padStart(11)}`.padStart(44));
    }
    lines.push([String(bytes).padStart(12), ...cells].join(''));
  }
  return lines.join('\n') + '\n';
}
