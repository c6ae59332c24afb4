// The GPU section (`npm run bench:gpu`, or `npm run bench` on a machine with CUDA devices):
//  1. MNIST 784-500-10 train-step throughput, 1 tower on cuda:0, against PyTorch on the same GPU and batch.
//  2. All-reduce bus bandwidth among 4 towers on GPU 0 (cuda:0x4: the cuda-p2p transport over device memory) at
//     256 MB per tower, ring / tree / naive, against the device-to-device copy bandwidth of the same GPU ('copy'
//     kernel, 256 MB, one tower) measured in the same run.
// Definitions as in bench/allreduce.ts: algbw = bytes / time; busbw = algbw * 2(n-1)/n; copy GB/s = bytes copied /
// time (each byte read once and written once). Not run yet on a GPU: see docs/gpu.md.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { NativeDevice } from '../src/backend/native-device.js';
import { loadMnist } from '../src/data/mnist.js';
import { native } from '../src/native/addon.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import type { Schedule, ScheduleRequest } from '../src/scheduler/schedule.js';
import { mnistDataDir, mnistSteps, mnistTower } from './mnist-train.js';
import { medianOfBest, type Row, type Section } from './section.js';

const BATCHES = [128, 1024];
const STEPS = 300;
const WARMUP = 50;
const REPS = 5;
const KEEP = 3;
const LR = 0.01;
const PYTHON = '/usr/bin/python3';
const TOWERS = 4;
const AR_BYTES = 256 * 1024 * 1024;
const AR_REPS = 5;
const AR_ITERS = 10;
const ALGOS: { name: string; plan: (req: ScheduleRequest) => Schedule }[] = [
  { name: 'ring', plan: (r) => ringSchedule(r) },
  { name: 'tree', plan: (r) => treeSchedule(r) },
  { name: 'naive', plan: (r) => naiveSchedule(r) },
];

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const fmtReps = (xs: number[]) => xs.map((x) => Math.round(x)).join(', ');

export function cudaDevices(): number {
  try {
    return native().backendKinds().includes('cuda') ? native().deviceCount('cuda') : 0;
  } catch {
    return 0;
  }
}

/** Our examples/s on cuda:0 at batch B (median of the best KEEP of REPS repetitions of STEPS steps). */
async function measureOurs(B: number): Promise<{ value: number; reps: number[] }> {
  const train = await loadMnist('train');
  const dev = NativeDevice.open('cuda', 0);
  const tower = mnistTower(dev, B, LR);
  try {
    const step = mnistSteps(tower, train, B, LR);
    for (let i = 0; i < WARMUP; i++) await step();
    const reps: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = nowMs();
      for (let i = 0; i < STEPS; i++) await step();
      reps.push((STEPS * B) / ((nowMs() - t0) / 1000));
    }
    const loss = tower.dataLoss() * B;
    if (!Number.isFinite(loss)) throw new Error(`gpu: training diverged on cuda:0 (loss ${loss})`);
    return { value: medianOfBest(reps, KEEP), reps };
  } finally {
    tower.dispose();
    await dev.close();
  }
}

// PyTorch on cuda:0: the model and step of bench/torch_mnist.py (Linear 784-500, ReLU, Linear 500-10, mean softmax
// cross-entropy, L2 1e-4 on the weights as SGD weight_decay, momentum 0.9), data on the GPU, batch gathered by index,
// FP32 matmuls (TF32 off). The loss is read back (.item()) every step, as our step completes before the next.
const TORCH_GPU = String.raw`
import json, os, sys, time
def main():
    data, B, steps, warmup, reps, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    try:
        import numpy as np, torch
    except Exception as e:
        print(json.dumps({'ok': False, 'error': 'cannot import torch/numpy: %s' % e})); return
    if not torch.cuda.is_available():
        print(json.dumps({'ok': False, 'error': 'torch.cuda.is_available() is False'})); return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    def idx(p):
        b = open(p, 'rb').read(); nd = b[3]
        dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], 'big') for i in range(nd)]
        return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)
    imgs = idx(os.path.join(data, 'train-images-idx3-ubyte')); labels = idx(os.path.join(data, 'train-labels-idx1-ubyte'))
    n = imgs.shape[0]; dev = torch.device('cuda:0')
    X = torch.from_numpy(imgs.reshape(n, -1).astype(np.float32) / np.float32(255.0)).to(dev)
    Y = torch.from_numpy(labels.astype(np.int64)).to(dev)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10)).to(dev)
    decay = [p for k, p in model.named_parameters() if k.endswith('weight')]
    other = [p for k, p in model.named_parameters() if k.endswith('bias')]
    opt = torch.optim.SGD([{'params': decay, 'weight_decay': 1e-4}, {'params': other, 'weight_decay': 0.0}], lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    total = warmup + reps * steps
    I = torch.randint(0, n, (total, B), device=dev)
    def step(i):
        x = X[I[i]]; y = Y[I[i]]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y); loss.backward(); opt.step()
        return loss.item()
    for i in range(warmup): step(i)
    torch.cuda.synchronize()
    rates = []; k = warmup; last = None
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            last = step(k); k += 1
        torch.cuda.synchronize()
        rates.append(steps * B / (time.perf_counter() - t0))
    print(json.dumps({'ok': True, 'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0), 'reps': rates, 'finalLoss': last}))
main()
`;

interface TorchGpu { ok: boolean; error?: string; torch?: string; gpu?: string; reps?: number[] }

function measureTorch(B: number): Promise<TorchGpu> {
  if (!existsSync(PYTHON)) return Promise.resolve({ ok: false, error: `${PYTHON} not found` });
  const args = ['-c', TORCH_GPU, mnistDataDir(), String(B), String(STEPS), String(WARMUP), String(REPS), String(LR)];
  return new Promise((resolve) => {
    const child = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => resolve({ ok: false, error: `cannot run ${PYTHON}: ${e.message}` }));
    child.on('close', (code) => {
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      if (!line) return resolve({ ok: false, error: `python exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` });
      try {
        resolve(JSON.parse(line) as TorchGpu);
      } catch {
        resolve({ ok: false, error: `unparseable output: ${line.slice(0, 200)}` });
      }
    });
  });
}

/** Values in [0.5, 1.5) from a counter hash: the all-reduce check compares against a JS sum on a sample. */
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

/** 4 towers on GPU 0: all-reduce ms per algorithm, and the D2D copy reference, interleaved repetition by repetition. */
interface AllReduceResult {
  results: { algo: string; ms: number; reps: number[] }[];
  copyGbps: number;
  copyReps: number[];
}

async function measureAllReduce(): Promise<AllReduceResult> {
  const nat = native();
  const length = AR_BYTES / 4;
  const devs = Array.from({ length: TOWERS }, () => nat.openDevice('cuda', 0).id);
  const groups: { algo: string; comm: number; progs: number[]; times: number[] }[] = [];
  try {
    const bufs = devs.map((d) => nat.alloc(d, length, 'f32'));
    const inputs = devs.map((_, r) => fill(r, length));
    // Copy reference: 'copy' kernel over 256 MB on the first tower's device.
    const cSrc = nat.alloc(devs[0]!, length, 'f32');
    const cDst = nat.alloc(devs[0]!, length, 'f32');
    const cProg = nat.compile(devs[0]!, [{ kernel: 'copy', inputs: [cSrc], outputs: [cDst], attrs: { N: length } }]);
    const copyTimes: number[] = [];
    for (const a of ALGOS) {
      const comm = nat.createComm(bufs, a.plan({ ranks: TOWERS, length }), 120_000);
      const progs = devs.map((d, r) => nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: r } }]));
      groups.push({ algo: a.name, comm, progs, times: [] });
      // Correctness once: a sample of elements equals the sum, every replica identical to rank 0 on that sample.
      bufs.forEach((b, r) => nat.write(b, inputs[r]!));
      await Promise.all(progs.map((p) => nat.run(p)));
      const outs = bufs.map((b) => nat.read(b) as Float32Array);
      for (let i = 0; i < length; i += 9973) {
        let exact = 0;
        for (const x of inputs) exact += x[i]!;
        if (!(Math.abs(outs[0]![i]! - exact) <= TOWERS * 2 ** -23 * exact))
          throw new Error(`gpu all-reduce ${a.name}: element ${i} is ${outs[0]![i]}, expected ${exact}`);
        for (let r = 1; r < TOWERS; r++)
          if (!Object.is(outs[r]![i], outs[0]![i])) throw new Error(`gpu all-reduce ${a.name}: rank ${r} differs from rank 0 at ${i}`);
      }
      await timeRuns(progs, 2);  // warm-up
    }
    await timeRuns([cProg], 2);
    for (let rep = 0; rep < AR_REPS; rep++) {
      for (const g of groups) g.times.push(await timeRuns(g.progs, AR_ITERS));
      copyTimes.push(await timeRuns([cProg], AR_ITERS));
    }
    const fastest = (xs: number[]) => [...xs].sort((x, y) => x - y).slice(0, KEEP)[Math.floor((Math.min(KEEP, xs.length) - 1) / 2)]!;
    const copyMs = fastest(copyTimes);
    return {
      results: groups.map((g) => ({ algo: g.algo, ms: fastest(g.times), reps: g.times })),
      copyGbps: AR_BYTES / (copyMs / 1000) / 1e9,
      copyReps: copyTimes.map((ms) => AR_BYTES / (ms / 1000) / 1e9),
    };
  } finally {
    for (const g of groups) {
      g.progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(g.comm);
    }
    devs.forEach((d) => nat.closeDevice(d));
  }
}

export const gpu: Section = {
  name: 'gpu',
  description: `MNIST train step on cuda:0 vs PyTorch on the same GPU; all-reduce among ${TOWERS} towers on GPU 0 at 256 MB vs D2D copy`,
  async run(): Promise<Row[]> {
    const n = cudaDevices();
    if (n === 0) throw new Error("no CUDA devices (or no CUDA backend in this build): the gpu section needs a GPU; see docs/gpu.md");
    const rows: Row[] = [];
    for (const B of BATCHES) {
      const ours = await measureOurs(B);
      const torch = await measureTorch(B);
      const row: Row = {
        name: `mnist 784-500-10 train step B=${B} (cuda:0, 1 tower)`,
        value: ours.value,
        unit: 'examples/s',
        target: 'ratio >= 1.0',
        note: `median of best ${KEEP} of ${REPS} reps x ${STEPS} steps; ours [${fmtReps(ours.reps)}]` +
          (torch.ok && torch.reps ? `; PyTorch [${fmtReps(torch.reps)}]` : `; PyTorch skipped: ${torch.error}`),
      };
      if (torch.ok && torch.reps?.length) {
        const ref = medianOfBest(torch.reps, KEEP);
        row.reference = { value: ref, label: `PyTorch ${torch.torch ?? '?'} on ${torch.gpu ?? 'cuda:0'} (FP32, loss read back per step)` };
        row.ratio = ours.value / ref;
        row.met = row.ratio >= 1.0;
      }
      rows.push(row);
    }
    const ar = await measureAllReduce();
    for (const r of ar.results) {
      const algbw = AR_BYTES / (r.ms / 1000) / 1e9;
      const busbw = (algbw * 2 * (TOWERS - 1)) / TOWERS;
      rows.push({
        name: `all-reduce ${r.algo}, ${TOWERS} towers on GPU 0, 256 MB: busbw`,
        value: busbw,
        unit: 'GB/s',
        reference: { value: ar.copyGbps, label: "D2D copy ('copy' kernel, 256 MB, one tower)" },
        ratio: busbw / ar.copyGbps,
        note: `${r.ms.toFixed(2)} ms per all-reduce, algbw ${algbw.toFixed(1)} GB/s; reps ${r.reps.map((x) => x.toFixed(2)).join(', ')} ms; ` +
          `copy reps ${ar.copyReps.map((x) => x.toFixed(0)).join(', ')} GB/s`,
      });
    }
    return rows;
  },
};
