// Seed 000's CIFAR-10 CNN (examples/sec at batch 128) and seed 001's block network (step time at batch 64) through
// the real runtime on 1 and 2 CPU towers, against PyTorch's figure for the same model, batch and input pipeline
// (bench/torch_cifar.py), measured in the same run where the python3 of bench/python.ts has torch.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { blocks, cifar10, createRuntime, type StepEvent, type TrainOptions } from '../src/runtime.js';
import { blockNetwork, cifar10Cnn } from '../src/model/spec.js';
import { blockTraining } from '../src/model/presets.js';
import { torchPython } from './python.js';
import { medianOfBest, type Row, type Section } from './section.js';

const CIFAR_BATCH = 128;
const BLOCKS_BATCH = 64;
const WARMUP = 3;
const MEASURED = 12;   // steps per timed repetition
const REPS = 3;        // repetitions per configuration, interleaved over the tower counts; figure = median of best 2
const KEEP = 2;
const TOWERS = [1, 2];
const THREADS = [1, 2];  // PyTorch's set_num_threads, best of
const PYTHON = torchPython();  // TOWERLINE_PYTHON, else the first python3 found (bench/python.ts)

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One timed run: examples/sec over the measured steps (total examples / total wall of those steps). */
async function timedRun(rt: Awaited<ReturnType<typeof createRuntime>>, o: Omit<TrainOptions, 'steps'>, batch: number): Promise<{ examplesPerSec: number; stepMs: number }> {
  const events: StepEvent[] = [];
  const run = rt.train({ ...o, steps: WARMUP + MEASURED, guard: { replicaCheckEvery: 0 } });
  run.steps$.subscribe((e) => events.push(e));
  const s = await run.done;
  await new Promise((r) => setImmediate(r));
  if (!Number.isFinite(s.finalLoss)) throw new Error(`cifar bench: training diverged (loss ${s.finalLoss})`);
  const m = events.slice(WARMUP);
  const wall = m.reduce((a, e) => a + e.secPerBatch, 0);
  return { examplesPerSec: (m.length * batch) / wall, stepMs: median(m.map((e) => e.secPerBatch * 1000)) };
}

async function measureOurs(): Promise<{ cifar: Map<number, number[]>; blocks: Map<number, number[]> }> {
  const cifar = new Map<number, number[]>(TOWERS.map((n) => [n, []]));
  const blk = new Map<number, number[]>(TOWERS.map((n) => [n, []]));
  // One runtime at a time: the GEMM thread count (cores / towers) is set per process when a runtime starts.
  for (let r = 0; r < REPS; r++) {
    for (const n of TOWERS) {
      const rt = await createRuntime({ devices: `cpu*${n}` });
      try {
        const c = await timedRun(rt, { model: cifar10Cnn(), optimizer: { type: 'sgd', lr: 0.1 }, data: cifar10({ batchSize: CIFAR_BATCH, generated: { count: 2560, seed: 1 } }), seed: r }, CIFAR_BATCH);
        cifar.get(n)!.push(c.examplesPerSec);
        const b = await timedRun(rt, { model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: BLOCKS_BATCH }), seed: r }, BLOCKS_BATCH);
        blk.get(n)!.push(b.stepMs);
      } finally {
        await rt.close();
      }
    }
  }
  return { cifar, blocks: blk };
}

interface TorchResult {
  ok: boolean;
  error?: string;
  torch?: string;
  configs?: { threads: number; reps: number[]; stepMs: number[] }[];
}

function runTorch(model: 'cifar' | 'blocks', batch: number): Promise<TorchResult> {
  if (!existsSync(PYTHON)) return Promise.resolve({ ok: false, error: `${PYTHON} not found` });
  const script = join(dirname(fileURLToPath(import.meta.url)), 'torch_cifar.py');
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;  // PyTorch's best configuration (see bench/mnist-step.ts)
  delete env.OPENBLAS_L2_SIZE;
  const args = [script, '--model', model, '--batch', String(batch), '--steps', String(MEASURED), '--warmup', String(WARMUP), '--reps', String(REPS), '--threads', THREADS.join(',')];
  return new Promise((resolve) => {
    const child = spawn(PYTHON, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => resolve({ ok: false, error: `cannot run ${PYTHON}: ${e.message}` }));
    child.on('close', (code) => {
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      if (code !== 0 || !line) return resolve({ ok: false, error: `torch_cifar.py exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` });
      try {
        resolve(JSON.parse(line) as TorchResult);
      } catch {
        resolve({ ok: false, error: `unparseable output: ${line.slice(0, 200)}` });
      }
    });
  });
}

const fmt = (xs: number[], d = 0) => xs.map((x) => x.toFixed(d)).join(', ');
/** Median of the best KEEP (lowest) times. */
const bestTime = (xs: number[]) => -medianOfBest(xs.map((x) => -x), KEEP);

export const cifarBench: Section = {
  name: 'cifar',
  description: `seed 000's CIFAR-10 CNN (batch ${CIFAR_BATCH}, generated 32x32x3 data, crops+flips+standardisation natively) and seed 001's 6x1000x1000 block network (batch ${BLOCKS_BATCH}, Adam, clip 5) through the runtime on 1 and 2 CPU towers vs PyTorch`,
  async run(): Promise<Row[]> {
    const ours = await measureOurs();
    const [tc, tb] = [await runTorch('cifar', CIFAR_BATCH), await runTorch('blocks', BLOCKS_BATCH)];
    const stat = `median of best ${KEEP} of ${REPS} reps x ${MEASURED} steps (after ${WARMUP} warm-up)`;
    const rows: Row[] = [];

    let cifarRef: Row['reference'];
    let cifarNote = '';
    if (tc.ok && tc.configs?.length) {
      const best = tc.configs.map((c) => ({ n: c.threads, v: medianOfBest(c.reps, KEEP), reps: c.reps })).reduce((a, b) => (b.v > a.v ? b : a));
      cifarRef = { value: best.v, label: `PyTorch ${tc.torch} (set_num_threads(${best.n}), best of ${THREADS.join('/')})` };
      cifarNote = `; PyTorch ${tc.configs.map((c) => `${c.threads}t: [${fmt(c.reps)}]`).join(' / ')}`;
    } else console.log(`  [cifar] PyTorch reference skipped: ${tc.error ?? 'no result'}`);
    for (const n of TOWERS) {
      const xs = ours.cifar.get(n)!;
      const v = medianOfBest(xs, KEEP);
      rows.push({
        name: `cifar10 CNN train step B=${CIFAR_BATCH}, ${n} CPU tower${n > 1 ? 's' : ''}`,
        value: v,
        unit: 'examples/s',
        ...(cifarRef ? { reference: cifarRef, ratio: v / cifarRef.value } : {}),
        note: `${stat}; ours [${fmt(xs)}]${cifarNote}`,
      });
    }

    let blkRef: Row['reference'];
    let blkNote = '';
    if (tb.ok && tb.configs?.length) {
      const best = tb.configs.map((c) => ({ n: c.threads, v: bestTime(c.stepMs) })).reduce((a, b) => (b.v < a.v ? b : a));
      blkRef = { value: best.v, label: `PyTorch ${tb.torch} (set_num_threads(${best.n}), best of ${THREADS.join('/')})` };
      blkNote = `; PyTorch ${tb.configs.map((c) => `${c.threads}t: [${fmt(c.stepMs, 1)}] ms`).join(' / ')}`;
    } else console.log(`  [cifar] PyTorch blocks reference skipped: ${tb.error ?? 'no result'}`);
    for (const n of TOWERS) {
      const xs = ours.blocks.get(n)!;
      const v = bestTime(xs);
      rows.push({
        name: `blocks 6x1000x1000 train step B=${BLOCKS_BATCH}, ${n} CPU tower${n > 1 ? 's' : ''}`,
        value: v,
        unit: 'ms/step',
        ...(blkRef ? { reference: blkRef, ratio: blkRef.value / v } : {}),
        note: `median step of each rep, ${stat.replace('median of best', 'median of the best (lowest)')}; ours [${fmt(xs, 1)}] ms${blkNote}`,
      });
    }
    return rows;
  },
};
