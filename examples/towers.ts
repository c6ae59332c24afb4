// Trains the MNIST network on several CPU towers (TOWERS, default 3) through the runtime and its step stream.
import { createRuntime, mnist, mnistMlp } from 'towerline';

const rt = await createRuntime({ devices: `cpu*${process.env.TOWERS ?? 3}`, reduction: { algorithm: 'ring' } });
const run = rt.train({
  model: mnistMlp(),
  optimizer: { type: 'momentum', momentum: 0.9, lr: { type: 'exponential', lr: 0.1, decayRate: 0.95, decaySteps: 468, staircase: true } },
  emaDecay: 0.999,
  data: mnist({ batchSize: 128 }),
  epochs: Number(process.env.EPOCHS ?? 3),
  seed: 1,
  evaluate: true,
});
run.steps$.subscribe((e) => {
  if (e.step % 100 === 0)
    console.log(`step ${e.step}, loss = ${e.loss.toFixed(3)} (${e.examplesPerSec.toFixed(1)} examples/sec; ${e.secPerBatch.toFixed(3)} sec/batch) shards ${e.shardSizes.join('/')}`);
});
run.events$.subscribe((e) => {
  if (e.type === 'evaluation') console.log(`epoch ${e.epoch + 1}: test accuracy ${(e.accuracy * 100).toFixed(2)}%${e.useEma ? ' (EMA weights)' : ''}`);
});
try {
  await run.done;
} finally {
  await rt.close();
}
