// Seed 000's CIFAR-10 CNN (TF's cifar10 tutorial) on several CPU towers through the runtime and its step stream.
// With the binary files: CIFAR10_DIR=/path/to/cifar-10-batches-bin npm run example:cifar10
// Without them it trains on a generated CIFAR-shaped set (seeded, 10 learnable classes).
// Env: TOWERS (default 2), BATCH (default 128), STEPS (default 300), CIFAR10_DIR.
import { createRuntime, cifar10, cifar10Cnn, cifar10Training, CIFAR10_CLASSES } from 'towerline';

const towers = Number(process.env.TOWERS ?? 2);
const batchSize = Number(process.env.BATCH ?? 128);
const dir = process.env.CIFAR10_DIR;
const data = dir ? cifar10({ batchSize, dir }) : cifar10({ batchSize, generated: { count: 10_000, testCount: 1_000, seed: 0 } });
console.log(`CIFAR-10 CNN on ${towers} CPU tower(s), batch ${batchSize}, ${dir ? `files in ${dir}` : 'generated data'}; classes ${CIFAR10_CLASSES.join(', ')}`);

const rt = await createRuntime({ devices: `cpu*${towers}` });
const run = rt.train({
  model: cifar10Cnn(),
  ...cifar10Training({ batchSize, examplesPerEpoch: dir ? 50_000 : 10_000 }),
  data,
  steps: Number(process.env.STEPS ?? 300),
  seed: 1,
  evaluate: true,
});
// The tutorial's log line: step, loss, examples/sec, sec/batch.
run.steps$.subscribe((e) => {
  if (e.step % 10 === 0 || e.step === 1)
    console.log(`step ${e.step}, loss = ${e.loss.toFixed(2)} (${e.examplesPerSec.toFixed(1)} examples/sec; ${e.secPerBatch.toFixed(3)} sec/batch) shards ${e.shardSizes.join('/')}`);
});
run.events$.subscribe((e) => {
  if (e.type === 'evaluation') console.log(`epoch ${e.epoch + 1}: test loss ${e.loss.toFixed(3)}, accuracy ${(e.accuracy * 100).toFixed(2)}%`);
});
try {
  const s = await run.done;
  console.log(`done: ${s.steps} steps, final loss ${s.finalLoss.toFixed(3)}${s.evaluation ? `, test accuracy ${(s.evaluation.accuracy * 100).toFixed(2)}%` : ''}`);
} finally {
  await rt.close();
}
