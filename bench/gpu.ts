// The GPU section (`npm run bench:gpu`, or `npm run bench` on a machine with CUDA devices), each figure beside its
// reference measured in the same run, with the ratio:
//  1. MNIST 784-500-10 train-step throughput, 1 tower on cuda:0, against PyTorch on the same GPU and batch
//     (bench/torch_mnist.py --device cuda).
//  2. All-reduce bus bandwidth among 2 and 4 towers on GPU 0 at 1, 16 and 256 MB per tower, ring / tree / naive,
//     against the device-to-device copy bandwidth of the same GPU at the same size (bench/gpu-allreduce.ts).
//  3. Seed 000's CIFAR-10 CNN (batch 128, generated data, crops/flips/standardisation on the device) through the
//     runtime on cuda:0, against PyTorch on the same GPU (bench/torch_cifar.py --device cuda).
// PyTorch runs under TOWERLINE_PYTHON (else the first python3 found: bench/python.ts). Results: docs/gpu.md.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeDevice } from '../src/backend/native-device.js';
import { loadMnist } from '../src/data/mnist.js';
import { native } from '../src/native/addon.js';
import { cifar10, createRuntime, type StepEvent } from '../src/runtime.js';
import { cifar10Cnn } from '../src/model/spec.js';
import { allReduceRows, SIZES_MB, TOWER_COUNTS } from './gpu-allreduce.js';
import { mnistDataDir, mnistSteps, mnistTower } from './mnist-train.js';
import { runPythonJson, torchPython } from './python.js';
import { medianOfBest, type Row, type Section } from './section.js';

const BATCHES = [128, 1024];
const STEPS = 300;
const WARMUP = 50;
const REPS = 5;
const KEEP = 3;
const LR = 0.01;
const CIFAR_BATCH = 128;
const CIFAR_WARMUP = 5;
const CIFAR_STEPS = 30;
const CIFAR_REPS = 3;
/** The target for the MNIST rows. */
export const MNIST_TARGET = 'MNIST step >= 1.0x PyTorch examples/s';

const here = dirname(fileURLToPath(import.meta.url));
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

interface TorchGpu { ok: boolean; error?: string; torch?: string; gpu?: string; configs?: { reps: number[] }[] }

/** A PyTorch reference script on GPU 0 (--device cuda, thread count left alone): its repetitions, or why not. */
async function torchOnGpu(script: string, args: string[]): Promise<{ reps: number[]; label: string } | { error: string }> {
  const r = await runPythonJson<TorchGpu>([join(here, script), '--device', 'cuda', '--threads', '0', ...args]);
  const reps = r.ok ? (r as TorchGpu).configs?.[0]?.reps : undefined;
  if (!reps?.length) return { error: r.error ?? `${script} returned no repetitions` };
  const t = r as TorchGpu;
  return { reps, label: `PyTorch ${t.torch ?? '?'} on ${t.gpu ?? 'cuda:0'}` };
}

function withReference(row: Row, ours: number[], torch: { reps: number[]; label: string } | { error: string }, how: string, target?: string): Row {
  if ('error' in torch) {
    row.note += `; PyTorch not measured (${torchPython()}): ${torch.error}`;
    return row;
  }
  const ref = medianOfBest(torch.reps, KEEP);
  row.reference = { value: ref, label: `${torch.label} (${how})` };
  row.ratio = row.value / ref;
  if (target) row.met = row.ratio >= 1.0;
  row.note += `; ours [${fmtReps(ours)}]; PyTorch [${fmtReps(torch.reps)}]`;
  return row;
}

async function mnistRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const B of BATCHES) {
    const ours = await measureOurs(B);
    const torch = await torchOnGpu('torch_mnist.py', ['--data', mnistDataDir(), '--batch', String(B), '--steps', String(STEPS),
      '--warmup', String(WARMUP), '--reps', String(REPS), '--lr', String(LR)]);
    rows.push(withReference({
      name: `mnist 784-500-10 train step B=${B} (cuda:0, 1 tower)`,
      value: ours.value,
      unit: 'examples/s',
      target: MNIST_TARGET,
      note: `median of best ${KEEP} of ${REPS} reps x ${STEPS} steps`,
    }, ours.reps, torch, 'FP32, loss read back per step', MNIST_TARGET));
  }
  return rows;
}

/** The CIFAR CNN through the runtime on cuda:0: examples/s over the measured steps of each repetition. */
async function cifarOurs(): Promise<number[]> {
  const rt = await createRuntime({ devices: 'cuda:0' });
  const reps: number[] = [];
  try {
    for (let r = 0; r < CIFAR_REPS; r++) {
      const events: StepEvent[] = [];
      const run = rt.train({
        model: cifar10Cnn(), optimizer: { type: 'sgd', lr: 0.1 }, seed: r, steps: CIFAR_WARMUP + CIFAR_STEPS,
        data: cifar10({ batchSize: CIFAR_BATCH, generated: { count: 2560, seed: 1 } }), guard: { replicaCheckEvery: 0 },
      });
      run.steps$.subscribe((e) => events.push(e));
      const summary = await run.done;
      await new Promise((res) => setImmediate(res));
      if (!Number.isFinite(summary.finalLoss)) throw new Error(`gpu cifar: training diverged on cuda:0 (loss ${summary.finalLoss})`);
      const measured = events.slice(CIFAR_WARMUP);
      reps.push((measured.length * CIFAR_BATCH) / measured.reduce((a, e) => a + e.secPerBatch, 0));
    }
  } finally {
    await rt.close();
  }
  return reps;
}

async function cifarRow(): Promise<Row> {
  const ours = await cifarOurs();
  const torch = await torchOnGpu('torch_cifar.py', ['--model', 'cifar', '--batch', String(CIFAR_BATCH), '--steps', String(CIFAR_STEPS),
    '--warmup', String(CIFAR_WARMUP), '--reps', String(CIFAR_REPS)]);
  return withReference({
    name: `cifar10 CNN train step B=${CIFAR_BATCH} (cuda:0, 1 tower, runtime)`,
    value: medianOfBest(ours, KEEP),
    unit: 'examples/s',
    note: `median of best ${KEEP} of ${CIFAR_REPS} reps x ${CIFAR_STEPS} steps (after ${CIFAR_WARMUP} warm-up)`,
  }, ours, torch, 'FP32, cuDNN autotuned, loss read back per step');
}

export const gpu: Section = {
  name: 'gpu',
  description: `MNIST train step and the CIFAR CNN on cuda:0 vs PyTorch on the same GPU; all-reduce among ` +
    `${TOWER_COUNTS.join(' and ')} towers on GPU 0 at ${SIZES_MB.join(', ')} MB vs D2D copy`,
  async run(): Promise<Row[]> {
    const n = cudaDevices();
    if (n === 0) throw new Error("no CUDA devices (or no CUDA backend in this build): the gpu section needs a GPU; see docs/gpu.md");
    // Each part on its own: a failing part is reported (and fails the bench run) without losing the others' rows.
    const rows: Row[] = [];
    const parts: [string, () => Promise<Row[]>][] = [['mnist', mnistRows], ['all-reduce', allReduceRows], ['cifar', async () => [await cifarRow()]]];
    for (const [part, measure] of parts) {
      try {
        rows.push(...(await measure()));
      } catch (e) {
        console.log(`  FAILED (gpu ${part}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        process.exitCode = 1;
      }
    }
    return rows;
  },
};
