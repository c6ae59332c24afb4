// Per-op profile of the MNIST MLP train step (784-500-10, batch 128, momentum) on cpu:0: the step program with a
// '@mark' after every op, run many times; prints each op's median and min microseconds per GEMM-thread count.
// Not a benchmark section (a diagnostic for the kernel work of issue 16):
//   node --import tsx bench/mnist-profile.ts [threads...]   (default 1 2)
import type { Op } from '../src/backend/backend.js';
import { NativeDevice } from '../src/backend/native-device.js';
import { epochOrder } from '../src/data/batches.js';
import { loadMnist } from '../src/data/mnist.js';
import { hyperBlock } from '../src/native/hyper.js';
import { mnistTower } from './mnist-train.js';

const B = 128;
const LR = 0.01;
const RUNS = Number(process.env.PROFILE_RUNS ?? 400);
const threads = process.argv.slice(2).map(Number).filter((n) => n > 0);

const train = await loadMnist('train');
const dev = NativeDevice.open('cpu', 0);
// PROFILE_UNFOLD=1: the lone tower's local norms as separate sum_squares passes right after backward (the program
// before the fold into l2_grad_norm's `local` output), for an A/B in one build.
const unfold = (list: Op[]): Op[] => {
  const local = new Map(list.filter((o) => o.kernel === 'l2_grad_norm' && o.outputs.length > 3).map((o) => [o.outputs[3]!, o]));
  return list.flatMap((o): Op[] => {
    if (o.kernel === 'l2_grad_norm' && o.outputs.length > 3) return [{ ...o, outputs: o.outputs.slice(0, 3) }];
    const l2 = o.kernel === 'fill' ? local.get(o.outputs[0]!) : undefined;
    return l2 ? [o, { kernel: 'sum_squares', inputs: [l2.outputs[0]!], outputs: [o.outputs[0]!], attrs: { N: l2.attrs!.N! } }] : [o];
  });
};
let captured: Op[] | undefined;
const compile = dev.compile.bind(dev);
dev.compile = (list: Op[]) => {
  const ops = process.env.PROFILE_UNFOLD === '1' ? unfold(list) : list;
  captured ??= ops;  // the first program compiled by the tower's step launch is the step program
  return compile(ops);
};
const tower = mnistTower(dev, B, LR);
tower.initWeights(1);
const ds = tower.uploadDataset(train.images, train.labels, train.count);
const launch = tower.stepLaunch(B, ds);
const ops = captured!;
const label = (op: Op) => `${op.kernel}${op.attrs && 'N' in op.attrs ? ` N=${String(op.attrs.N)}` : ''}${op.attrs && 'M' in op.attrs ? ` ${String(op.attrs.M)}x${String(op.attrs.N)}x${String(op.attrs.K)}` : ''}`;
const kept = ops.filter((op) => op.kernel !== '@mark');
const marked = dev.compile(kept.flatMap((op) => [op, { kernel: '@mark', inputs: [], outputs: [] }]));
const order = epochOrder(train.count, 7, 0, true);
for (const n of threads.length ? threads : [1, 2]) {
  dev.gemmThreads = n;
  const per: number[][] = kept.map(() => []);
  const totals: number[] = [];
  for (let r = 0; r < RUNS + 20; r++) {
    const b = r % Math.floor(train.count / B);
    const writes: Array<[number, Int32Array | Float32Array]> = [
      [launch.indices, order.subarray(b * B, (b + 1) * B)],
      [launch.hyper, hyperBlock(LR, r + 1, 1 / B)],
    ];
    const res = await dev.runWith(marked, writes, []);
    if (r < 20) continue;
    let prev = 0;
    res.marks.forEach((m, i) => {
      per[i]!.push((m - prev) * 1e3);
      prev = m;
    });
    totals.push(prev * 1e3);
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const min = (xs: number[]) => Math.min(...xs);
  console.log(`\n${n} GEMM thread(s), ${RUNS} runs: device time median ${med(totals).toFixed(1)} us, min ${min(totals).toFixed(1)} us`);
  let sumMed = 0, sumMin = 0;
  kept.forEach((op, i) => {
    sumMed += med(per[i]!);
    sumMin += min(per[i]!);
    if (op.kernel !== '@fault') console.log(`  ${String(i).padStart(3)} ${label(op).padEnd(44)} median ${med(per[i]!).toFixed(1).padStart(7)}  min ${min(per[i]!).toFixed(1).padStart(7)}`);
  });
  console.log(`  sum of medians ${sumMed.toFixed(1)} us, sum of minima ${sumMin.toFixed(1)} us`);
}
dev.releaseProgram(marked);
tower.dispose();
await dev.close();

// The floor's GEMMs (bench/mnist-floor.ts: the matmul kernel at the step's shapes, fresh buffers), marked the same way.
{
  const { floorOps, mlpStepGemms } = await import('./mnist-floor.js');
  const { mnistMlp } = await import('../src/model/spec.js');
  const fdev = NativeDevice.open('cpu', 0);
  const shapes = mlpStepGemms(mnistMlp(), B);
  const bufs: number[] = [];
  const fops = floorOps(fdev, shapes, bufs).flatMap((op): Op[] => [op, { kernel: '@mark', inputs: [], outputs: [] }]);
  const fp = fdev.compile(fops);
  for (const n of threads.length ? threads : [1, 2]) {
    fdev.gemmThreads = n;
    const per: number[][] = shapes.map(() => []);
    for (let r = 0; r < RUNS + 20; r++) {
      const res = await fdev.runWith(fp, [], []);
      if (r < 20) continue;
      let prev = 0;
      res.marks.forEach((m, i) => {
        per[i]!.push((m - prev) * 1e3);
        prev = m;
      });
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`\nfloor, ${n} GEMM thread(s):`);
    shapes.forEach((s, i) => console.log(`  matmul ${s.M}x${s.N}x${s.K} tA=${s.transA} tB=${s.transB}`.padEnd(48) + ` median ${med(per[i]!).toFixed(1).padStart(7)}  min ${Math.min(...per[i]!).toFixed(1).padStart(7)}`));
  }
  fdev.releaseProgram(fp);
  bufs.forEach((h) => fdev.free(h));
  await fdev.close();
}
