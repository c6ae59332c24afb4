// Measures all-reduce time and bandwidth among CPU towers in this process (CLI `bench allreduce`, npm run bench).
import { native } from './native/addon.js';
import { ringSchedule } from './scheduler/ring.js';
import { treeSchedule } from './scheduler/tree.js';
import { naiveSchedule } from './scheduler/naive.js';
import type { Schedule, ScheduleRequest } from './scheduler/schedule.js';

export const ALGORITHMS: Record<string, (req: ScheduleRequest) => Schedule> = { ring: ringSchedule, tree: treeSchedule, naive: naiveSchedule };

export interface AllreduceResult {
  algorithm: string;
  towers: number;
  bytes: number;
  /** Median seconds per all-reduce. */
  seconds: number;
  algbw: number;  // bytes / s
  busbw: number;  // algbw · 2(n−1)/n, nccl-tests' definition
}

/** Times one algorithm at one size: N devices, one buffer each, one '@collective' program each, run together. */
export async function measureAllreduce(algorithm: string, towers: number, bytes: number, iters?: number): Promise<AllreduceResult> {
  const plan = ALGORITHMS[algorithm];
  if (!plan) throw new Error(`unknown algorithm '${algorithm}'; use ${Object.keys(ALGORITHMS).join(', ')}`);
  const n = native();
  const length = Math.max(1, Math.floor(bytes / 4));
  const devs = Array.from({ length: towers }, (_, i) => n.openDevice('cpu', i));
  try {
    const bufs = devs.map((d, r) => {
      const h = n.alloc(d.id, length, 'f32');
      n.write(h, new Float32Array(length).fill(r + 1));
      return h;
    });
    const comm = n.createComm(bufs, plan({ ranks: towers, length }), 60_000);
    const progs = devs.map((d, r) => n.compile(d.id, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: r } }]));
    const runOnce = () => Promise.all(progs.map((p) => n.run(p)));
    await runOnce();
    // Correctness: after one all-reduce of 1..n every element is n(n+1)/2; later runs keep growing (any value is fine).
    const expect = (towers * (towers + 1)) / 2;
    for (const h of bufs) {
      const got = n.read(h, 0, Math.min(length, 64)) as Float32Array;
      if (!got.every((v) => v === expect)) throw new Error(`${algorithm} all-reduce among ${towers} towers is wrong: expected ${expect}, got ${got[0]}`);
    }
    const reps = iters ?? Math.max(5, Math.min(200, Math.floor(2e8 / Math.max(bytes, 1))));
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await runOnce();
      times.push((performance.now() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    const seconds = times[Math.floor(times.length / 2)]!;
    const algbw = (length * 4) / seconds;
    n.releaseComm(comm);
    progs.forEach((p) => n.releaseProgram(p));
    bufs.forEach((h) => n.free(h));
    return { algorithm, towers, bytes: length * 4, seconds, algbw, busbw: (algbw * 2 * (towers - 1)) / towers };
  } finally {
    devs.forEach((d) => n.closeDevice(d.id));
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
