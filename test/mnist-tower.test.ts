// Seed 004's network (784-500-10, ReLU, L2 1e-4, batch 100) on one tower reaches >= 98% on the real MNIST test set.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tower } from '../src/model/tower.js';
import { mnistMlp } from '../src/model/spec.js';
import { loadMnist } from '../src/data/mnist.js';
import { batchPlans } from '../src/data/batches.js';
import { learningRate, parseSchedule } from '../src/model/schedule.js';
import { openTestDevice } from './support/device.js';

const dev = openTestDevice();
after(() => dev.close());

// 10 epochs of momentum SGD (lr 0.1, x0.95 per epoch, staircase): 6000 steps, about 15 s on 2 CPU cores.
const EPOCHS = 10;

it(`MNIST 784-500-10 on one tower (${dev.name}) reaches >= 98.0% test accuracy in ${EPOCHS} epochs`, async () => {
  const [train, test] = await Promise.all([loadMnist('train'), loadMnist('test')]);
  const tower = new Tower(dev, mnistMlp(), {
    maxBatch: 1000,
    training: { optimizer: { type: 'momentum', lr: 0.1, momentum: 0.9 }, emaDecay: 0.999 },
  });
  tower.initWeights(4);
  const trainSet = tower.uploadDataset(train.images, train.labels, train.count);
  const testSet = tower.uploadDataset(test.images, test.labels, test.count);
  const schedule = parseSchedule({ type: 'exponential', lr: 0.1, decayRate: 0.95, decaySteps: 600, staircase: true });
  let step = 0;
  let firstLoss = NaN;
  for (const plan of batchPlans({ count: train.count, batchSize: 100, seed: 4, lastBatch: 'drop', epochs: EPOCHS })) {
    await tower.trainStep({ kind: 'indices', dataset: trainSet, indices: plan.indices }, learningRate(schedule, step), step + 1);
    if (step === 0) firstLoss = tower.dataLoss();
    step++;
  }
  const lastLoss = tower.dataLoss();
  const plain = await tower.evaluate(testSet);
  const ema = await tower.evaluate(testSet, { useEma: true });
  console.log(`# ${step} steps; loss ${firstLoss.toFixed(3)} -> ${lastLoss.toFixed(4)}; test accuracy ${plain.accuracy} (EMA ${ema.accuracy})`);
  assert.equal(step, EPOCHS * 600);
  assert.ok(firstLoss > 1.5, `first loss ${firstLoss} should be near ln(10)`);
  assert.ok(lastLoss < 0.1, `final training loss ${lastLoss}`);
  assert.ok(plain.accuracy >= 0.98, `test accuracy ${plain.accuracy} < 0.98`);
  assert.ok(ema.accuracy >= 0.98, `EMA test accuracy ${ema.accuracy} < 0.98`);
  tower.dispose();
});
