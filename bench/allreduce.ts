// All-reduce bus bandwidth of the native collective executor (ring, tree, naive) on CPU towers, nccl-tests style,
// against this machine's memcpy bandwidth measured in the same run.
//
// Harness: src/collective-bench.ts (shared with `towerline bench allreduce`): N cpu devices, one f32 buffer of the
// message size on each, one communicator and '@collective' program set per algorithm; every configuration is checked
// once against a JS-computed sum before it is timed, so a broken collective cannot report a bandwidth.
//
// Definitions (nccl-tests'): algbw = message bytes / time; busbw = algbw * 2(n-1)/n (the bytes each rank moves,
// independent of n for an optimal algorithm). The reference, memcpy bandwidth, is bytes COPIED / time for the
// native 'copy' kernel (memmove) over a 64 MB f32 buffer on one device thread: each byte is read once and written
// once, so DRAM traffic is twice that figure. busbw counts the same way (one byte moved = one byte counted).
//
// Latency (1 KB): nccl-tests launch a collective's iterations back to back and synchronize the host once at the
// end. The equivalent here: each tower runs one program holding B2B '@collective' ops, all towers together, and the
// latency is the run's wall time / B2B (the host round trip and the towers' start skew are paid once per run, i.e.
// 1/B2B of them per collective). The table's time column is the other figure, one collective per JS call
// (run every tower's program, await them: the device-thread wake-ups and promise round trip included); both rows
// are printed, next to the bare round trip of an empty program on the same towers measured in the same run.
import { AllreduceSetup, CpuTowers, timeIters } from '../src/collective-bench.js';
import { native } from '../src/native/addon.js';
import type { Row, Section } from './section.js';

const KB = 1024;
const MB = 1024 * KB;
/** 1 KB .. 64 MB in powers of 4 (fp32 elements = bytes / 4). */
const SIZES = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536].map((k) => k * KB);
const TOWERS = [2, 4];
const ALGOS = ['ring', 'tree', 'naive'];
const REPS = 7;         // timed repetitions per configuration, interleaved across algorithms
const KEEP = 3;         // the figure is the median of the best 3 repetitions
const REP_MS = 25;      // a repetition runs enough iterations to last about this long
const MAX_ITERS = 4000;
const WARMUP = 2;       // untimed iterations after the correctness check
const MEMCPY_BYTES = 64 * MB;
const B2B = 1000;       // collectives per program in the back-to-back latency runs

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

/** One (towers, size) configuration: every algorithm over the same buffers, checked, then timed interleaved. */
async function measureGroup(towers: CpuTowers, n: number, bytes: number, memcpy?: { once: () => Promise<unknown>; pair: () => Promise<unknown>; reps: number[]; pairReps: number[] }): Promise<Result[]> {
  const length = bytes / 4;
  const setup = new AllreduceSetup(towers, n, length, ALGOS);
  try {
    const inputs = Array.from({ length: n }, (_, r) => fillValues(r, length));
    const timing = setup.groups.map((g) => ({ g, times: [] as number[], iters: 1 }));
    for (const t of timing) {
      await setup.verify(t.g, inputs);
      // Warm-up, then size the repetition. (Buffers keep being all-reduced in place, so their values grow n-fold
      // per iteration and reach +Inf after a few dozen; SSE adds of Inf run at full speed, unlike denormals.)
      for (let i = 0; i < WARMUP; i++) await t.g.once();
      const t1 = await timeIters(() => t.g.once(), 3);
      t.iters = Math.max(1, Math.min(MAX_ITERS, Math.ceil(REP_MS / Math.max(t1, 1e-3))));
    }
    for (let rep = 0; rep < REPS; rep++) {
      for (const t of timing) t.times.push(await timeIters(() => t.g.once(), t.iters));
      if (memcpy) {
        memcpy.reps.push(await timeIters(memcpy.once, 2));
        memcpy.pairReps.push(await timeIters(memcpy.pair, 2));
      }
    }
    return timing.map((t) => ({ n, algo: t.g.algorithm, bytes, ms: medianOfFastest(t.times), reps: t.times, iters: t.iters, waitFrac: setup.waitFraction(t.g) }));
  } finally {
    setup.release();
  }
}

interface Latency {
  n: number;
  algo: string;
  b2bUs: number;        // per collective, B2B run back to back on the device threads
  b2bReps: number[];
  callUs: number;       // one collective per JS call (run + await)
  emptyCallUs: number;  // an empty program per tower, run + await: the bare round trip
}

/**
 * 1 KB latency of `algos` on the first n towers: B2B collectives back to back per run (checked first), one
 * collective per JS call, and the bare round trip of an empty program, interleaved over REPS repetitions.
 */
async function measureLatency(towers: CpuTowers, n: number, algos: string[]): Promise<Latency[]> {
  const nat = native();
  const length = KB / 4;
  const setup = new AllreduceSetup(towers, n, length, algos);
  const devs = towers.devices.slice(0, n);
  const programs: number[] = [];
  const compile = (d: number, ops: Array<{ kernel: string; inputs: number[]; outputs: number[]; attrs: Record<string, number> }>) => {
    const p = nat.compile(d, ops);
    programs.push(p);
    return p;
  };
  try {
    const empty = devs.map((d) => compile(d, [{ kernel: '@mark', inputs: [], outputs: [], attrs: {} }]));
    const runEmpty = () => Promise.all(empty.map((p) => nat.run(p)));
    const inputs = Array.from({ length: n }, (_, r) => fillValues(r, length));
    const per = [];
    for (const g of setup.groups) {
      const b2b = devs.map((d, r) => compile(d, Array.from({ length: B2B }, () => ({ kernel: '@collective', inputs: [], outputs: [], attrs: { comm: g.comm, rank: r } }))));
      const runB2b = () => Promise.all(b2b.map((p) => nat.run(p)));
      await setup.verify(g, inputs);
      for (let i = 0; i < WARMUP; i++) await runB2b();
      per.push({ g, runB2b, b2b: [] as number[], call: [] as number[], empty: [] as number[] });
    }
    const callIters = 200;
    for (let rep = 0; rep < REPS; rep++)
      for (const t of per) {
        t.b2b.push((await timeIters(t.runB2b, 1)) / B2B);
        t.call.push(await timeIters(() => t.g.once(), callIters));
        t.empty.push(await timeIters(runEmpty, callIters));
      }
    return per.map((t) => ({
      n, algo: t.g.algorithm, b2bUs: medianOfFastest(t.b2b) * 1000, b2bReps: t.b2b.map((ms) => ms * 1000),
      callUs: medianOfFastest(t.call) * 1000, emptyCallUs: medianOfFastest(t.empty) * 1000,
    }));
  } finally {
    for (const p of programs) nat.releaseProgram(p);
    setup.release();
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
  console.log(`  ${head1}  ${ALGOS.map((a) => `| ${a.padEnd(w[2]! + w[3]! + w[4]! + 2 + 8)}`).join(' ')}`);
  console.log(`  ${pad('size', 0)} ${pad('count', 1)}  ${ALGOS.map(() => `| ${'time(us)'.padStart(w[2]!)} ${'algbw'.padStart(w[3]!)} ${'busbw'.padStart(w[4]!)} ${'wait%'.padStart(6)}`).join(' ')}`);
  const sizes = [...new Set(results.map((r) => r.bytes))].sort((a, b) => a - b);
  for (const bytes of sizes) {
    const cells = ALGOS.map((a) => {
      const r = results.find((x) => x.bytes === bytes && x.algo === a)!;
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
    const h = new CpuTowers(Math.max(...TOWERS));
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
    const latency: Latency[] = [];
    try {
      for (const n of TOWERS) latency.push(...(await measureLatency(h, n, ALGOS)));
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
        target: n === 2 ? 'busbw >= 0.80 x memcpy (issue 16)' : 'busbw >= 0.50 x memcpy',
        met: ratio >= (n === 2 ? 0.8 : 0.5),
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
      const ring = latency.find((x) => x.n === n && x.algo === 'ring')!;
      const tree = latency.find((x) => x.n === n && x.algo === 'tree')!;
      const naive = latency.find((x) => x.n === n && x.algo === 'naive')!;
      const small = results.find((x) => x.n === n && x.algo === 'ring' && x.bytes === KB)!;
      const indent = n === 2 ? '' : '  ';
      rows.push({
        name: `${indent}all-reduce latency, 1 KB, ${n} towers, ${B2B} back to back on the device threads (ring / tree ${tree.b2bUs.toFixed(2)} / naive ${naive.b2bUs.toFixed(2)} us)`,
        value: ring.b2bUs,
        unit: 'us',
        ...(n === 2 ? { target: '<= 10 us (issue 16)', met: ring.b2bUs <= 10 } : {}),
        note: `per collective = run wall time / ${B2B}, median of best ${KEEP} of ${REPS}: ${ring.b2bReps.map((x) => x.toFixed(2)).join(', ')} us; ` +
          `barrier wait ${(small.waitFrac * 100).toFixed(0)}% of rank time` + (n === 2 ? '; the ring on 2 towers runs as one phase (Note [Fused steps])' : '; naive runs as one phase on any tower count (Note [Fused steps])'),
      });
      rows.push({
        name: `${indent}  all-reduce 1 KB, ${n} towers, one per JS call (run every tower's program + await; ring / tree ${tree.callUs.toFixed(1)} / naive ${naive.callUs.toFixed(1)} us)`,
        value: ring.callUs,
        unit: 'us',
        reference: { value: ring.emptyCallUs, label: `an empty program on ${n} towers, run + await (the bare round trip)` },
        ratio: ring.emptyCallUs / ring.callUs,
        note: `${(ring.callUs - ring.emptyCallUs).toFixed(1)} us above the empty program's round trip (${ring.emptyCallUs.toFixed(1)} us); the table's time column is this figure`,
      });
    }
    return rows;
  },
};
