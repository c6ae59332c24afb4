// Seed 001's block network (6 x 1000x1000 sigmoid, batch 64, Adam, clip 5) on 1 CPU tower, on 2 towers, and on 2
// towers with the sharded update (Note [Sharded update]): issue 16 asks 2 towers with it to be at least as fast as 1.
// Configurations interleave rep by rep (their order reversed every other rep) so drift on the machine hits them
// alike; the figure per configuration is the lowest of the reps' median step times; the ratio is 1 tower's time /
// the configuration's (>= 1: not slower).
// Each row's note also gives, from the rep with that lowest median, the slowest tower's median device time per
// phase (forward, backward, reduce, update), to show where a step's time goes. On cpu the sharded towers share
// weights and gradients (Notes [Shared weights], [Shared gradients]): 'reduce' is then the fused reduce-and-norm pass,
// which also forms each dense weight's summed gradient from both towers' x and dy, so the dW products (half of them
// per tower) are timed in 'reduce', not in 'backward', there: compare backward + reduce across rows. The step time,
// the figure and the ratio measure what they did before.
import { blocks, createRuntime, type StepEvent } from '../src/runtime.js';
import { blockNetwork } from '../src/model/spec.js';
import { blockTraining } from '../src/model/presets.js';
import { median, type Row, type Section } from './section.js';

const BATCH = 64;
const WARMUP = 3;
const STEPS = 12;
const REPS = Number(process.env.TOWERLINE_BENCH_REPS ?? 5);

const CONFIGS = [
  { label: '1 CPU tower', towers: 1, shardUpdate: false },
  { label: '2 CPU towers', towers: 2, shardUpdate: false },
  { label: '2 CPU towers, sharded update', towers: 2, shardUpdate: true },
] as const;

const PHASES = ['forward', 'backward', 'reduce', 'update'] as const;

/** The median step time (ms) of one run of WARMUP + STEPS steps, warm-up left out, and its phases (see above). */
async function medianStepMs(towers: number, shardUpdate: boolean, seed: number): Promise<{ ms: number; phases: string }> {
  const rt = await createRuntime({ devices: `cpu*${towers}` });
  try {
    const events: StepEvent[] = [];
    const run = rt.train({ model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: BATCH }), seed, steps: WARMUP + STEPS, shardUpdate, guard: { replicaCheckEvery: 0 } });
    run.steps$.subscribe((e: StepEvent) => e.step > WARMUP && events.push(e));
    const s = await run.done;
    if (!Number.isFinite(s.finalLoss)) throw new Error(`blocks-shard bench: training diverged (loss ${s.finalLoss})`);
    const slowest = (p: (typeof PHASES)[number]) => Math.max(...Array.from({ length: towers }, (_, t) => median(events.map((e) => e.towers[t]![p]))));
    return { ms: median(events.map((e) => e.secPerBatch * 1000)), phases: PHASES.map((p) => `${p} ${slowest(p).toFixed(1)}`).join(', ') };
  } finally {
    await rt.close();
  }
}

export const blocksShardBench: Section = {
  name: 'blocks-shard',
  description: `seed 001's block network (batch ${BATCH}, Adam, clip 5): 1 tower vs 2 towers, without and with the sharded update`,
  async run(): Promise<Row[]> {
    const runs = CONFIGS.map(() => [] as Array<{ ms: number; phases: string }>);
    for (let r = 0; r < REPS; r++) {
      const order = [...CONFIGS.keys()];
      if (r % 2 === 1) order.reverse();
      for (const k of order) runs[k]!.push(await medianStepMs(CONFIGS[k]!.towers, CONFIGS[k]!.shardUpdate, r));
    }
    const times = runs.map((xs) => xs.map((x) => x.ms));
    const best = times.map((xs) => Math.min(...xs));
    const phases = runs.map((xs, k) => xs[times[k]!.indexOf(best[k]!)]!.phases);
    return CONFIGS.map((c, k) => ({
      name: `blocks 6x1000x1000 train step B=${BATCH}, ${c.label}`,
      value: best[k]!,
      unit: 'ms/step',
      ...(k > 0 ? { reference: { value: best[0]!, label: CONFIGS[0].label }, ratio: best[0]! / best[k]! } : {}),
      ...(c.shardUpdate ? { target: 'ratio >= 1.0 (issue 16)', met: best[0]! / best[k]! >= 1 } : {}),
      note: `lowest of ${REPS} reps' median step (${STEPS} steps after ${WARMUP} warm-up): [${times[k]!.map((x) => x.toFixed(1)).join(', ')}] ms; device ms per phase: ${phases[k]}`,
    }));
  },
};
