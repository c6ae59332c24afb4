// All-reduce bus bandwidth of the native collective executor (ring, tree, naive) on CPU towers, nccl-tests style,
// against this machine's memcpy bandwidth measured in the same run.
//
// Harness: the main thread opens N cpu devices, allocates one f32 buffer of the message size on each, creates one
// communicator per algorithm over those buffers and compiles, per device, a program holding only the '@collective'
// op; one all-reduce is `await Promise.all(programs.map(run))`. Every configuration is checked once against a
// JS-computed sum before it is timed, so a broken collective cannot report a bandwidth.
//
// Definitions (nccl-tests'): algbw = message bytes / time; busbw = algbw * 2(n-1)/n (the bytes each rank moves,
// independent of n for an optimal algorithm). The reference, memcpy bandwidth, is bytes COPIED / time for the
// native 'copy' kernel (memmove) over a 64 MB f32 buffer on one device thread: each byte is read once and written
// once, so DRAM traffic is twice that figure. busbw counts the same way (one byte moved = one byte counted).
import { native } from '../src/native/addon.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import type { Schedule, ScheduleRequest } from '../src/scheduler/schedule.js';
import type { Row, Section } from './section.js';

const KB = 1024;
const MB = 1024 * KB;
/** 1 KB .. 64 MB in powers of 4 (fp32 elements = bytes / 4). */
const SIZES = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536].map((k) => k * KB);
const TOWERS = [2, 4];
const ALGOS: { name: string; plan: (req: ScheduleRequest) => Schedule }[] = [
  { name: 'ring', plan: (r) => ringSchedule(r) },
  { name: 'tree', plan: (r) => treeSchedule(r) },
  { name: 'naive', plan: (r) => naiveSchedule(r) },
];
const REPS = 7;         // timed repetitions per configuration, interleaved across algorithms
const KEEP = 3;         // the figure is the median of the best 3 repetitions
const REP_MS = 25;      // a repetition runs enough iterations to last about this long
const MAX_ITERS = 4000;
const WARMUP = 2;       // untimed iterations after the correctness check
const MEMCPY_BYTES = 64 * MB;
const TIMEOUT_MS = 60_000;

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Median of the best (smallest) `keep` times. */
function medianOfFastest(xs: number[], keep = KEEP): number {
  const best = [...xs].sort((a, b) => a - b).slice(0, Math.max(1, Math.min(keep, xs.length)));
  return best[Math.floor((best.length - 1) / 2)]!;
}

/** Deterministic non-dyadic values in [0.5, 1.5): sums really round, so the check exercises float order. */
function fillValues(rank: number, length: number): Float32Array {
  const a = new Float32Array(length);
  let s = (0x9e3779b9 ^ (rank * 0x85ebca6b)) >>> 0;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = 0.5 + s / 4294967296;
  }
  return a;
}

/** Times `iters` back-to-back calls of `once`; returns ms per call. */
async function timeIters(once: () => Promise<unknown>, iters: number): Promise<number> {
  const t0 = nowMs();
  for (let i = 0; i < iters; i++) await once();
  return (nowMs() - t0) / iters;
}

interface Result {
  n: number;
  algo: string;
  bytes: number;
  ms: number;
  reps: number[];
  iters: number;
  waitFrac: number;  // share of the collective's time the ranks spent at barriers (commStats, last iteration)
}

interface MemcpyRef {
  gbps: number;
  reps: number[];
  twoThreadGbps: number;
}

class Harness {
  readonly devices: number[] = [];
  constructor(count: number) {
    for (let i = 0; i < count; i++) this.devices.push(native().openDevice('cpu', i).id);
  }
  close(): void {
    for (const d of this.devices) native().closeDevice(d);
  }
}

/** One (towers, size) group: buffers, one communicator and program set per algorithm, all interleaved. */
async function measureGroup(h: Harness, n: number, bytes: number, memcpy?: { once: () => Promise<unknown>; pair: () => Promise<unknown>; reps: number[]; pairReps: number[] }): Promise<Result[]> {
  const nat = native();
  const length = bytes / 4;
  const devs = h.devices.slice(0, n);
  const bufs = devs.map((d) => nat.alloc(d, length, 'f32'));
  const inputs = devs.map((_, r) => fillValues(r, length));
  const exact = new Float64Array(length);
  for (const x of inputs) for (let i = 0; i < length; i++) exact[i] += x[i]!;
  const absSum = exact;  // all values are positive: sum |x| = sum x
  const eps = 2 ** -23;
  const groups: { algo: string; comm: number; progs: number[]; times: number[]; iters: number }[] = [];
  try {
    for (const a of ALGOS) {
      const schedule = a.plan({ ranks: n, length });
      const comm = nat.createComm(bufs, schedule, TIMEOUT_MS);
      const progs = devs.map((d, r) => nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: r } }]));
      groups.push({ algo: a.name, comm, progs, times: [], iters: 1 });
    }
    for (const g of groups) {
      // Correctness, once per configuration: fresh inputs, one all-reduce, every buffer equals the sum within
      // float-order tolerance, and all replicas are bit-identical (the schedules copy one reduction everywhere).
      bufs.forEach((b, r) => nat.write(b, inputs[r]!));
      await Promise.all(g.progs.map((p) => nat.run(p)));
      const outs = bufs.map((b) => nat.read(b) as Float32Array);
      for (let i = 0; i < length; i++) {
        const got = outs[0]![i]!;
        if (!(Math.abs(got - exact[i]!) <= n * eps * absSum[i]!))
          throw new Error(`allreduce ${g.algo}, ${n} towers, ${bytes} B: element ${i} is ${got}, expected ${exact[i]} (sum of ${inputs.map((x) => x[i]).join(' + ')})`);
        for (let r = 1; r < n; r++)
          if (!Object.is(outs[r]![i], got))
            throw new Error(`allreduce ${g.algo}, ${n} towers, ${bytes} B: rank ${r} holds ${outs[r]![i]} at element ${i}, rank 0 holds ${got} (replicas must be bit-identical)`);
      }
      // Warm-up, then size the repetition. (Buffers keep being all-reduced in place, so their values grow n-fold
      // per iteration and reach +Inf after a few dozen; SSE adds of Inf run at full speed, unlike denormals.)
      const once = () => Promise.all(g.progs.map((p) => nat.run(p)));
      for (let i = 0; i < WARMUP; i++) await once();
      const t1 = await timeIters(once, 3);
      g.iters = Math.max(1, Math.min(MAX_ITERS, Math.ceil(REP_MS / Math.max(t1, 1e-3))));
    }
    for (let rep = 0; rep < REPS; rep++) {
      for (const g of groups) {
        const once = () => Promise.all(g.progs.map((p) => nat.run(p)));
        g.times.push(await timeIters(once, g.iters));
      }
      if (memcpy) {
        memcpy.reps.push(await timeIters(memcpy.once, 2));
        memcpy.pairReps.push(await timeIters(memcpy.pair, 2));
      }
    }
    return groups.map((g) => {
      let total = 0;
      let wait = 0;
      for (let r = 0; r < n; r++) {
        const s = nat.commStats(g.comm, r);
        total += s.totalMs;
        wait += s.waitMs;
      }
      return { n, algo: g.algo, bytes, ms: medianOfFastest(g.times), reps: g.times, iters: g.iters, waitFrac: total > 0 ? wait / total : 0 };
    });
  } finally {
    for (const g of groups) {
      for (const p of g.progs) nat.releaseProgram(p);
      nat.releaseComm(g.comm);
    }
    for (const b of bufs) nat.free(b);
  }
}

const fmtSize = (b: number) => (b >= MB ? `${b / MB} MB` : `${b / KB} KB`);
const gb = (bytesPerMs: number) => bytesPerMs / 1e6;  // bytes/ms -> GB/s (1e9 bytes)
const algbw = (r: Result) => gb(r.bytes / r.ms);
const busbw = (r: Result) => (algbw(r) * 2 * (r.n - 1)) / r.n;

function printTable(n: number, results: Result[], memcpyGbps: number): void {
  const w = [9, 10, 8, 8, 6];
  const pad = (s: string, i: number) => s.padStart(w[i]!);
  console.log(`  # all-reduce, ${n} towers (cpu:0..${n - 1} in one process), fp32, in place; time = median of best ${KEEP} of ${REPS} reps`);
  console.log(`  # busbw = algbw * 2(n-1)/n = algbw * ${((2 * (n - 1)) / n).toFixed(2)}; GB/s = 1e9 B/s; memcpy (1 thread, bytes copied) = ${memcpyGbps.toFixed(2)} GB/s`);
  const head1 = ['', ''].map((s, i) => pad(s, i)).join(' ');
  console.log(`  ${head1}  ${ALGOS.map((a) => `| ${a.name.padEnd(w[2]! + w[3]! + w[4]! + 2 + 8)}`).join(' ')}`);
  console.log(`  ${pad('size', 0)} ${pad('count', 1)}  ${ALGOS.map(() => `| ${'time(us)'.padStart(w[2]!)} ${'algbw'.padStart(w[3]!)} ${'busbw'.padStart(w[4]!)} ${'wait%'.padStart(6)}`).join(' ')}`);
  const sizes = [...new Set(results.map((r) => r.bytes))].sort((a, b) => a - b);
  for (const bytes of sizes) {
    const cells = ALGOS.map((a) => {
      const r = results.find((x) => x.bytes === bytes && x.algo === a.name)!;
      const us = r.ms * 1000;
      return `| ${(us >= 100 ? us.toFixed(0) : us.toFixed(1)).padStart(w[2]!)} ${algbw(r).toFixed(3).padStart(w[3]!)} ${busbw(r).toFixed(3).padStart(w[4]!)} ${(r.waitFrac * 100).toFixed(0).padStart(5)}%`;
    });
    console.log(`  ${pad(fmtSize(bytes), 0)} ${pad(String(bytes / 4), 1)}  ${cells.join(' ')}`);
  }
}

export const allreduce: Section = {
  name: 'allreduce',
  description: 'all-reduce bus bandwidth (ring/tree/naive), 1 KB..64 MB fp32, 2 and 4 CPU towers, vs memcpy',
  async run(): Promise<Row[]> {
    const nat = native();
    const h = new Harness(Math.max(...TOWERS));
    const memLen = MEMCPY_BYTES / 4;
    // memcpy reference: the 'copy' kernel over 64 MB on cpu:0 (and, for the record, on cpu:0 and cpu:1 at once).
    const mSrc = h.devices.slice(0, 2).map((d) => nat.alloc(d, memLen, 'f32'));
    const mDst = h.devices.slice(0, 2).map((d) => nat.alloc(d, memLen, 'f32'));
    mSrc.forEach((b, i) => nat.write(b, fillValues(10 + i, memLen)));
    const mProg = h.devices.slice(0, 2).map((d, i) => nat.compile(d, [{ kernel: 'copy', inputs: [mSrc[i]!], outputs: [mDst[i]!], attrs: { N: memLen } }]));
    const memcpy = {
      once: () => nat.run(mProg[0]!),
      pair: () => Promise.all(mProg.map((p) => nat.run(p))),
      reps: [] as number[],
      pairReps: [] as number[],
    };
    const results: Result[] = [];
    try {
      for (let i = 0; i < 2; i++) await memcpy.pair();  // fault the destination pages in
      for (const n of TOWERS) {
        for (const bytes of SIZES) {
          // The memcpy reference is interleaved with the 64 MB repetitions, so both see the same machine load.
          results.push(...(await measureGroup(h, n, bytes, bytes === MEMCPY_BYTES ? memcpy : undefined)));
        }
      }
    } finally {
      for (const p of mProg) nat.releaseProgram(p);
      for (const b of [...mSrc, ...mDst]) nat.free(b);
      h.close();
    }
    const memMs = medianOfFastest(memcpy.reps);
    const ref: MemcpyRef = {
      gbps: gb(MEMCPY_BYTES / memMs),
      reps: memcpy.reps.map((ms) => gb(MEMCPY_BYTES / ms)),
      twoThreadGbps: gb((2 * MEMCPY_BYTES) / medianOfFastest(memcpy.pairReps)),
    };
    for (const n of TOWERS) {
      printTable(n, results.filter((r) => r.n === n), ref.gbps);
      console.log('');
    }
    console.log(`  memcpy reference: 'copy' kernel, 64 MB, 1 device thread: ${ref.gbps.toFixed(2)} GB/s copied ` +
      `(reps ${ref.reps.map((x) => x.toFixed(2)).join(', ')}); 2 device threads at once: ${ref.twoThreadGbps.toFixed(2)} GB/s aggregate`);

    const rows: Row[] = [];
    const label = 'memcpy, 1 thread, 64 MB (bytes copied/s)';
    for (const n of TOWERS) {
      const r = results.find((x) => x.n === n && x.algo === 'ring' && x.bytes === MEMCPY_BYTES)!;
      const ratio = busbw(r) / ref.gbps;
      rows.push({
        name: `ring all-reduce busbw, 64 MB fp32, ${n} towers`,
        value: busbw(r),
        unit: 'GB/s',
        reference: { value: ref.gbps, label },
        ratio,
        target: 'busbw >= 0.50 x memcpy',
        met: ratio >= 0.5,
        note: `time ${(r.ms).toFixed(2)} ms (median of best ${KEEP} of ${REPS}: ${r.reps.map((x) => x.toFixed(1)).join(', ')} ms), ` +
          `algbw ${algbw(r).toFixed(2)} GB/s, barrier wait ${(r.waitFrac * 100).toFixed(0)}% of rank time` +
          (n > 2 ? `; ${n} towers on a 2-core machine: device threads time-share the cores` : ''),
      });
    }
    for (const n of TOWERS) {
      for (const algo of ['tree', 'naive']) {
        const r = results.find((x) => x.n === n && x.algo === algo && x.bytes === MEMCPY_BYTES)!;
        rows.push({ name: `  ${algo} all-reduce busbw, 64 MB fp32, ${n} towers`, value: busbw(r), unit: 'GB/s', reference: { value: ref.gbps, label }, ratio: busbw(r) / ref.gbps });
      }
      const small = results.find((x) => x.n === n && x.algo === 'ring' && x.bytes === KB)!;
      const smallTree = results.find((x) => x.n === n && x.algo === 'tree' && x.bytes === KB)!;
      rows.push({ name: `  all-reduce latency, 1 KB, ${n} towers (ring / tree ${(smallTree.ms * 1000).toFixed(1)} us)`, value: small.ms * 1000, unit: 'us' });
    }
    return rows;
  },
};
