// All-reduce among several towers on GPU 0 (the cuda-p2p transport over device memory) against the GPU's
// device-to-device copy bandwidth at the same size, for the 'gpu' bench section (bench/gpu.ts).
// Definitions as in bench/allreduce.ts: algbw = bytes / time; busbw = algbw * 2(n-1)/n; copy GB/s = bytes copied /
// time by the 'copy' kernel on one tower (each byte read once and written once). With one GPU the towers share it:
// the bandwidth between them is device memory bandwidth, not a link.
//
// Note [One-GPU all-reduce bound]: with n towers' buffers of S bytes in one GPU's memory, any all-reduce reads and
// writes every buffer at least once: 2nS bytes at the memory rate R, where a copy of S moves 2S (copy GB/s = R/2).
// So busbw / copy <= 2(n-1)/n * (S / (2nS/R)) / (R/2) = 2(n-1)/n², 0.375 at n = 4, 0.5 at n = 2, whatever the
// algorithm. A ring moves more: (n-1) reduce steps of n chunks of S/n read twice and written once, then (n-1)
// copy steps read once and written once, 5(n-1)S in all: busbw / copy <= 4/(5n), 0.2 at n = 4, 0.4 at n = 2.
// Each 256 MB row's note gives both bounds, and PyTorch's plain sum-and-copy on the same GPU is measured beside ours
// (bench/torch_allreduce.py; NCCL cannot put several ranks on one GPU).
import { native } from '../src/native/addon.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import type { Schedule, ScheduleRequest } from '../src/scheduler/schedule.js';
import { runPythonJson } from './python.js';
import type { Row } from './section.js';

export const TOWER_COUNTS = [2, 4];
export const SIZES_MB = [1, 16, 256];
const REPS = 5;
const KEEP = 3;
const MB = 1024 * 1024;
const ALGOS: { name: string; plan: (req: ScheduleRequest) => Schedule }[] = [
  { name: 'ring', plan: (r) => ringSchedule(r) },
  { name: 'tree', plan: (r) => treeSchedule(r) },
  { name: 'naive', plan: (r) => naiveSchedule(r) },
];
/** The target; set on the row of the algorithm 'auto' picks at that size (ring). */
export const ALLREDUCE_TARGET = '4-tower all-reduce >= 60% of D2D copy at 256 MB';

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Values in [0.5, 1.5) from a counter hash: the check compares against a JS sum on a sample. */
function fill(rank: number, length: number): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = 0.5 + (((i * 2654435761 + rank * 40503) >>> 0) % 65536) / 65536;
  return a;
}

async function timeRuns(progs: number[], iters: number): Promise<number> {
  const nat = native();
  const t0 = nowMs();
  for (let i = 0; i < iters; i++) await Promise.all(progs.map((p) => nat.run(p)));
  return (nowMs() - t0) / iters;
}

/** Median of the best KEEP (lowest) times. */
function fastest(xs: number[]): number {
  const best = [...xs].sort((x, y) => x - y).slice(0, KEEP);
  return best[Math.floor((best.length - 1) / 2)]!;
}

interface Measured { algo: string; ms: number; reps: number[] }

/** n towers on GPU 0, `bytes` per tower: ms per all-reduce per algorithm, and the D2D copy of `bytes`, interleaved. */
async function measureOne(n: number, bytes: number, inputs: Float32Array[]): Promise<{ results: Measured[]; copyMs: number; copyReps: number[] }> {
  const nat = native();
  const length = bytes / 4;
  const iters = bytes >= 64 * MB ? 10 : 50;
  const devs = Array.from({ length: n }, () => nat.openDevice('cuda', 0).id);
  const groups: { algo: string; comm: number; progs: number[]; times: number[] }[] = [];
  try {
    const bufs = devs.map((d) => nat.alloc(d, length, 'f32'));
    const cSrc = nat.alloc(devs[0]!, length, 'f32');
    const cDst = nat.alloc(devs[0]!, length, 'f32');
    const cProg = nat.compile(devs[0]!, [{ kernel: 'copy', inputs: [cSrc], outputs: [cDst], attrs: { N: length } }]);
    for (const a of ALGOS) {
      const comm = nat.createComm(bufs, a.plan({ ranks: n, length }), 120_000);
      const progs = devs.map((d, r) => nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: r } }]));
      groups.push({ algo: a.name, comm, progs, times: [] });
      // Correctness once: a sample of elements equals the sum, every replica identical to rank 0 on that sample.
      bufs.forEach((b, r) => nat.write(b, inputs[r]!.subarray(0, length)));
      await Promise.all(progs.map((p) => nat.run(p)));
      const outs = bufs.map((b) => nat.read(b) as Float32Array);
      for (let i = 0; i < length; i += 9973) {
        let exact = 0;
        for (let r = 0; r < n; r++) exact += inputs[r]![i]!;
        if (!(Math.abs(outs[0]![i]! - exact) <= n * 2 ** -23 * exact))
          throw new Error(`gpu all-reduce ${a.name}, ${n} towers, ${bytes / MB} MB: element ${i} is ${outs[0]![i]}, expected ${exact}`);
        for (let r = 1; r < n; r++)
          if (!Object.is(outs[r]![i], outs[0]![i])) throw new Error(`gpu all-reduce ${a.name}, ${n} towers: rank ${r} differs from rank 0 at ${i}`);
      }
      await timeRuns(progs, 2);  // warm-up
    }
    await timeRuns([cProg], 2);
    const copyTimes: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const g of groups) g.times.push(await timeRuns(g.progs, iters));
      copyTimes.push(await timeRuns([cProg], iters));
    }
    nat.releaseProgram(cProg);
    return { results: groups.map((g) => ({ algo: g.algo, ms: fastest(g.times), reps: g.times })), copyMs: fastest(copyTimes), copyReps: copyTimes };
  } finally {
    for (const g of groups) {
      g.progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(g.comm);
    }
    devs.forEach((d) => nat.closeDevice(d));
  }
}

/** One row per (towers, size, algorithm): busbw against the D2D copy bandwidth at that size. */
export async function allReduceRows(): Promise<Row[]> {
  const maxBytes = Math.max(...SIZES_MB) * MB;
  const inputs = Array.from({ length: Math.max(...TOWER_COUNTS) }, (_, r) => fill(r, maxBytes / 4));
  const rows: Row[] = [];
  for (const n of TOWER_COUNTS)
    for (const mb of SIZES_MB) {
      const bytes = mb * MB;
      const m = await measureOne(n, bytes, inputs);
      const copyGbps = bytes / (m.copyMs / 1000) / 1e9;
      for (const r of m.results) {
        const algbw = bytes / (r.ms / 1000) / 1e9;
        const busbw = (algbw * 2 * (n - 1)) / n;
        const row: Row = {
          name: `all-reduce ${r.algo}, ${n} towers on GPU 0, ${mb} MB: busbw`,
          value: busbw,
          unit: 'GB/s',
          reference: { value: copyGbps, label: `D2D copy ('copy' kernel, ${mb} MB, one tower)` },
          ratio: busbw / copyGbps,
          note: `${r.ms.toFixed(3)} ms per all-reduce, algbw ${algbw.toFixed(1)} GB/s; reps ${r.reps.map((x) => x.toFixed(3)).join(', ')} ms; ` +
            `copy reps ${m.copyReps.map((ms) => (bytes / (ms / 1000) / 1e9).toFixed(0)).join(', ')} GB/s`,
        };
        if (mb === 256) row.note += `; one-GPU bound (Note [One-GPU all-reduce bound]): ratio <= ${(2 * (n - 1) / n ** 2).toFixed(3)} for any algorithm, ${(4 / (5 * n)).toFixed(3)} for a ring`;
        if (n === 4 && mb === 256 && r.algo === 'ring') {
          row.target = ALLREDUCE_TARGET;
          row.met = row.ratio! >= 0.6;
        }
        rows.push(row);
      }
    }
  rows.push(...(await torchRows(rows)));
  return rows;
}

interface TorchAllReduce { ok: boolean; error?: string; torch?: string; gpu?: string; configs?: { towers: number; mb: number; allreduce_ms: number[]; copy_ms: number[] }[] }

/** Per tower count at the largest size: our fastest algorithm's busbw against PyTorch's sum-and-copy on the same GPU. */
async function torchRows(ours: Row[]): Promise<Row[]> {
  const mb = Math.max(...SIZES_MB);
  const r = await runPythonJson<TorchAllReduce>([new URL('./torch_allreduce.py', import.meta.url).pathname, '--towers',
    ...TOWER_COUNTS.map(String), '--mb', String(mb)]);
  const rows: Row[] = [];
  for (const n of TOWER_COUNTS) {
    const mine = ours.filter((x) => x.name.includes(`, ${n} towers on GPU 0, ${mb} MB`)).sort((x, y) => y.value - x.value)[0];
    if (!mine) continue;
    const row: Row = { name: `all-reduce (fastest: ${mine.name.split(',')[0]!.replace('all-reduce ', '')}), ${n} towers on GPU 0, ${mb} MB: busbw vs PyTorch`, value: mine.value, unit: 'GB/s', note: '' };
    const c = r.ok ? (r as TorchAllReduce).configs?.find((x) => x.towers === n && x.mb === mb) : undefined;
    if (!c) {
      row.note = `PyTorch not measured: ${r.error ?? 'no result for this size'}`;
    } else {
      const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const bytes = mb * MB;
      const busbw = (bytes / (med(c.allreduce_ms) / 1000) / 1e9) * 2 * (n - 1) / n;
      const copy = bytes / (med(c.copy_ms) / 1000) / 1e9;
      row.reference = { value: busbw, label: `PyTorch ${(r as TorchAllReduce).torch} on ${(r as TorchAllReduce).gpu}: sum of the ${n} buffers, then copied into each (CUDA events, median)` };
      row.ratio = mine.value / busbw;
      row.note = `PyTorch ${med(c.allreduce_ms).toFixed(3)} ms per all-reduce; its D2D copy ${copy.toFixed(0)} GB/s, so PyTorch's busbw / copy ${(busbw / copy).toFixed(2)} and ours / PyTorch's copy ${(mine.value / copy).toFixed(2)}`;
    }
    rows.push(row);
  }
  return rows;
}
