// Trains seed 004's MNIST network (784-500-10, ReLU, L2 1e-4, batch 100) on one CPU tower and evaluates it.
import { mnistMlp } from 'towerline';
import { NativeDevice, Tower, loadMnist, batchPlans, parseSchedule, learningRate } from 'towerline/advanced';

const epochs = Number(process.env.EPOCHS ?? 5);
const device = NativeDevice.open('cpu', 0);
const [train, test] = await Promise.all([loadMnist('train'), loadMnist('test')]);
const tower = new Tower(device, mnistMlp(), {
  maxBatch: 1000,
  training: { optimizer: { type: 'momentum', lr: 0.1, momentum: 0.9 }, emaDecay: 0.999 },
});
tower.initWeights(42);
const trainSet = tower.uploadDataset(train.images, train.labels, train.count);
const testSet = tower.uploadDataset(test.images, test.labels, test.count);
const schedule = parseSchedule({ type: 'exponential', lr: 0.1, decayRate: 0.95, decaySteps: 600, staircase: true });
let step = 0;
let t0 = performance.now();
for (const batch of batchPlans({ count: train.count, batchSize: 100, seed: 42, lastBatch: 'drop', epochs })) {
  await tower.trainStep({ kind: 'indices', dataset: trainSet, indices: batch.indices }, learningRate(schedule, step), step + 1);
  step++;
  if (step % 100 === 0) {
    const dt = (performance.now() - t0) / 1000 / 100;
    console.log(`step ${step}, loss = ${tower.dataLoss().toFixed(3)} (${(100 / dt).toFixed(1)} examples/sec; ${dt.toFixed(4)} sec/batch)`);
    t0 = performance.now();
  }
  if (batch.index === 599) {
    const ev = await tower.evaluate(testSet, { useEma: true });
    console.log(`epoch ${batch.epoch + 1}: test accuracy ${(ev.accuracy * 100).toFixed(2)}% (EMA weights)`);
  }
}
tower.dispose();
await device.close();
