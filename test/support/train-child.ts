// One rank of a multi-process training test (test/multi-process.test.ts, test/netns.test.ts): a runtime with a
// process group trains mnistMlp(64) and writes one JSON line per event to stdout ('ready', 'gradients',
// 'weights', 'resumed', 'error', 'closed'); gradients go to a file (rank's tower 0, after the all-reduce).
// Usage: node --import tsx test/support/train-child.ts '<json TrainChildArgs>'
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRuntime, mnist, type Runtime } from '../../src/runtime.js';
import { mnistMlp } from '../../src/model/spec.js';
import { injectFaults } from '../../src/testing/faults.js';
import type { GroupSettings } from '../../src/options.js';

export interface TrainChildArgs {
  /** equivalence: one step (gradients to `out`), then `steps` steps from the seed (weight hashes). train: one run. */
  scenario: 'equivalence' | 'train';
  devices: string;
  group: GroupSettings;
  steps: number;
  seed?: number;
  batchSize?: number;
  /** Where the gradients file goes. */
  out?: string;
  checkpoint?: { dir: string; everySteps?: number; resume?: boolean };
  /** Overlap the all-reduce with backward (train's `overlap`), with this bucket cap. */
  overlap?: boolean;
  bucketBytes?: number;
  /** Arm a kernel fault ('throw') on this process's tower 0 at this step's forward pass. */
  faultAtStep?: number;
}

const args = JSON.parse(process.argv[2]!) as TrainChildArgs;
const rank = args.group.rank ?? -1;
const t0 = Date.now();
const emit = (event: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, rank, ms: Date.now() - t0, at: Date.now(), ...data }) + '\n');

/** sha256 of every tensor, by name order: one hash per tower. */
function hashOf(tensors: Map<string, Float32Array>): string {
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(name).update(Buffer.from(t.buffer, t.byteOffset, t.byteLength));
  }
  return h.digest('hex');
}

// The one-step gradient run writes no checkpoint: the run after it is a fresh run, and a fresh run refuses a
// directory holding another run's checkpoints (Note [Checkpoint ownership]).
const options = (steps: number, checkpoint = true) => ({
  model: mnistMlp(64),
  optimizer: { type: 'momentum' as const, lr: 0.05, momentum: 0.9 },
  data: mnist({ batchSize: args.batchSize ?? 128 }),
  steps,
  seed: args.seed ?? 11,
  ...(args.overlap !== undefined ? { overlap: args.overlap } : {}),
  ...(args.bucketBytes !== undefined ? { bucketBytes: args.bucketBytes } : {}),
  ...(args.checkpoint && checkpoint ? { checkpoint: { ...args.checkpoint, keep: 5 } } : {}),
});

async function train(rt: Runtime, steps: number, checkpoint = true): Promise<void> {
  const run = rt.train(options(steps, checkpoint));
  run.events$.subscribe((e) => {
    if (e.type === 'resumed') emit('resumed', { step: e.step, bitIdentical: e.bitIdentical, note: e.note });
    if (e.type === 'checkpoint') emit('checkpoint', { step: e.step });
  });
  run.steps$.subscribe((e) => emit('step', { step: e.step, loss: e.loss, shardSizes: e.shardSizes }));
  const s = await run.done;
  emit('done', { steps: s.steps, loss: s.finalLoss });
}

async function main(): Promise<void> {
  let rt: Runtime | undefined;
  try {
    rt = await createRuntime({ devices: args.devices, group: args.group });
    emit('ready');
    if (args.faultAtStep !== undefined) injectFaults(rt, (step, t) => (step === args.faultAtStep && t === 0 ? { at: 'forward', kind: 'throw' } : undefined));
    if (args.scenario === 'equivalence') {
      await train(rt, 1, false);
      const grads = await rt.readGradients();
      const g0 = grads[0]!;
      const names = [...g0.keys()].sort();
      writeFileSync(join(args.out!, `grad-${rank}.bin`), Buffer.concat(names.map((n) => Buffer.from(g0.get(n)!.buffer))));
      emit('gradients', { names, sizes: names.map((n) => g0.get(n)!.length), hashes: grads.map(hashOf) });
    }
    await train(rt, args.steps);
    emit('weights', { hashes: (await rt.readWeights()).map(hashOf) });
  } catch (e) {
    emit('error', { message: (e as Error).message });
  } finally {
    const c0 = Date.now();
    await rt?.close();
    emit('closed', { closeMs: Date.now() - c0 });
  }
}

await main();
