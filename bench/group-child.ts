// One rank of bench/group.ts: 'train' times training steps of a runtime in a process group; 'allreduce' times the
// cross-process all-reduce of the group alone (slot 0, each size checked once against the exact sum first). Rank 0
// prints one JSON line. Usage: node --import tsx bench/group-child.ts '<json GroupChildArgs>'
import { createRuntime, mnist } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { native } from '../src/native/addon.js';
import { ProcessGroup } from '../src/group/process-group.js';
import { timeIters } from '../src/collective-bench.js';

export interface GroupChildArgs {
  scenario: 'train' | 'allreduce';
  rank: number;
  worldSize: number;
  runId: string;
  rdzv: string;
  /** train: devices per process, batch, steps per repetition, warm-up steps, repetitions, learning rate. */
  devices?: string;
  batch?: number;
  steps?: number;
  warmup?: number;
  reps?: number;
  lr?: number;
  /** train: overlap the all-reduce with backward (train's `overlap`, default bucket cap). */
  overlap?: boolean;
  /** allreduce: message sizes in bytes, repetitions, ms per repetition. */
  sizes?: number[];
  repMs?: number;
}

const a = JSON.parse(process.argv[2]!) as GroupChildArgs;
const group = { rank: a.rank, worldSize: a.worldSize, runId: a.runId, rdzv: a.rdzv };

async function train(): Promise<Record<string, unknown>> {
  const rt = await createRuntime({ devices: a.devices ?? 'cpu:0', group });
  try {
    const steps = a.steps ?? 200;
    const warmup = a.warmup ?? 30;
    const reps = a.reps ?? 3;
    const B = a.batch ?? 128;
    const marks: number[] = [];
    const run = rt.train({ model: mnistMlp(), optimizer: { type: 'momentum', lr: a.lr ?? 0.01, momentum: 0.9 }, data: mnist({ batchSize: B }), steps: warmup + reps * steps, guard: { replicaCheckEvery: 0 }, overlap: a.overlap ?? false });
    run.steps$.subscribe((e) => {
      if (e.step >= warmup && (e.step - warmup) % steps === 0) marks.push(performance.now());
    });
    const s = await run.done;
    const rates = marks.slice(1).map((t, i) => (steps * B) / ((t - marks[i]!) / 1000));
    return { reps: rates, finalLoss: s.finalLoss };
  } finally {
    await rt.close();
  }
}

async function allreduce(): Promise<Record<string, unknown>> {
  const g = await ProcessGroup.create(group, {});
  const nat = native();
  const dev = nat.openDevice('cpu', 0).id;
  const rows: Array<{ bytes: number; reps: number[] }> = [];
  try {
    for (const bytes of a.sizes ?? []) {
      const n = bytes / 4;
      const buf = nat.alloc(dev, n, 'f32');
      // Checked once: small integers sum exactly in any order.
      nat.write(buf, Float32Array.from({ length: n }, (_, i) => (i % 7) + a.rank));
      await g.allReduce(buf, 0, 0, n);
      const got = nat.read(buf) as Float32Array;
      const want = (i: number) => a.worldSize * (i % 7) + (a.worldSize * (a.worldSize - 1)) / 2;
      for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 97))) if (got[i] !== want(i)) throw new Error(`all-reduce of ${bytes} bytes: element ${i} is ${got[i]}, expected ${want(i)}`);
      nat.write(buf, new Float32Array(n)); // zeros: timing never meets infinities
      const once = () => g.allReduce(buf, 0, 0, n);
      await once();
      const t1 = await timeIters(once, 2);
      // Every rank must run as many iterations: rank 0's choice is broadcast.
      const mine = new Uint32Array([Math.max(1, Math.min(2000, Math.ceil((a.repMs ?? 30) / Math.max(t1, 1e-3))))]);
      const iters = new Uint32Array((await g.broadcast(new Uint8Array(mine.buffer), 0)).slice().buffer)[0]!;
      const reps: number[] = [];
      for (let r = 0; r < (a.reps ?? 5); r++) {
        await g.barrier();
        reps.push(await timeIters(once, iters));
      }
      nat.free(buf);
      rows.push({ bytes, reps });
    }
    return { rows };
  } finally {
    nat.closeDevice(dev);
    g.close();
  }
}

try {
  const result = a.scenario === 'train' ? await train() : await allreduce();
  if (a.rank === 0) console.log(JSON.stringify({ ok: true, ...result }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: (e as Error).message }));
  process.exitCode = 1;
}
