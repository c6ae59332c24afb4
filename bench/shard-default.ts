// Where the sharded update is on by default (Note [Sharded update]: exactly two CPU towers in one process, nothing
// chosen): 2 CPU towers with it against the same 2 towers without it, on the MNIST MLP (momentum, Adam; and a wider
// hidden layer) and seed 001's block network. The runs interleave rep by rep on one runtime so drift on the machine
// hits both alike; the figure per configuration is the lowest of the reps' median step times; the ratio is the
// unsharded time / the sharded time (>= 1: the default is not slower).
import { blocks, createRuntime, mnist, type StepEvent, type TrainOptions } from '../src/runtime.js';
import { blockNetwork, mnistMlp } from '../src/model/spec.js';
import { blockTraining } from '../src/model/presets.js';
import { median, type Row, type Section } from './section.js';

const QUICK = process.env.TOWERLINE_BENCH_QUICK === '1';
const REPS = QUICK ? 1 : Number(process.env.TOWERLINE_BENCH_REPS ?? 4);

interface Case {
  label: string;
  train: Omit<TrainOptions, 'steps' | 'seed'>;
  warmup: number;
  steps: number;
}

const CASES: Case[] = [
  { label: 'MNIST 784-500-10 B=128, momentum', train: { model: mnistMlp(), optimizer: { type: 'momentum', lr: 0.01, momentum: 0.9 }, data: mnist({ batchSize: 128 }) }, warmup: 30, steps: QUICK ? 20 : 300 },
  { label: 'MNIST 784-500-10 B=128, Adam', train: { model: mnistMlp(), optimizer: { type: 'adam', lr: 0.001 }, data: mnist({ batchSize: 128 }) }, warmup: 30, steps: QUICK ? 20 : 300 },
  { label: 'MNIST 784-1024-10 B=128, momentum', train: { model: mnistMlp(1024), optimizer: { type: 'momentum', lr: 0.01, momentum: 0.9 }, data: mnist({ batchSize: 128 }) }, warmup: 20, steps: QUICK ? 10 : 200 },
  { label: 'blocks 6x1000x1000 B=64, Adam, clip 5', train: { model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: 64 }) }, warmup: 3, steps: QUICK ? 3 : 15 },
];

export const shardDefaultBench: Section = {
  name: 'shard-default',
  description: '2 CPU towers with the sharded update (the default there) vs without it, interleaved on one runtime',
  async run(): Promise<Row[]> {
    const rt = await createRuntime({ devices: 'cpu*2' });
    const times = CASES.map(() => ({ sharded: [] as number[], whole: [] as number[] }));
    try {
      for (let r = 0; r < REPS; r++)
        for (const [k, c] of CASES.entries())
          for (const shardUpdate of [false, true]) {
            const steps: number[] = [];
            const run = rt.train({ ...c.train, steps: c.warmup + c.steps, seed: r + 1, shardUpdate, guard: { replicaCheckEvery: 0 } });
            run.steps$.subscribe((e: StepEvent) => e.step > c.warmup && steps.push(e.secPerBatch * 1000));
            const s = await run.done;
            if (!Number.isFinite(s.finalLoss)) throw new Error(`shard-default bench: ${c.label} diverged (loss ${s.finalLoss})`);
            times[k]![shardUpdate ? 'sharded' : 'whole'].push(median(steps));
          }
    } finally {
      await rt.close();
    }
    return CASES.map((c, k) => {
      const { sharded, whole } = times[k]!;
      const [s, w] = [Math.min(...sharded), Math.min(...whole)];
      return {
        name: `2 CPU towers, sharded update (the default), ${c.label}`,
        value: s,
        unit: 'ms/step',
        reference: { value: w, label: 'the same towers, shardUpdate: false' },
        ratio: w / s,
        target: 'ratio >= 1.0 (the default wins where it is on)',
        met: w / s >= 1,
        note: `lowest of ${REPS} reps' median step (${c.steps} steps after ${c.warmup}): sharded [${sharded.map((x) => x.toFixed(3)).join(', ')}], unsharded [${whole.map((x) => x.toFixed(3)).join(', ')}] ms`,
      };
    });
  },
};
