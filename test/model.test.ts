// Model spec validation, seeded initialisation, schedules, and a whole tower step on the device vs the float64 reference.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelSpec, mnistMlp, type ModelSpec } from '../src/model/spec.js';
import { Tower } from '../src/model/tower.js';
import { learningRate, parseSchedule } from '../src/model/schedule.js';
import { ReferenceBackend } from '../src/reference/reference-backend.js';
import { relErr, testRandom } from '../src/reference/relerr.js';
import { ConfigError } from '../src/util/validate.js';
import { openTestDevice } from './support/device.js';

const dev = openTestDevice();
after(() => dev.close());

describe('model spec', () => {
  it('accepts the MNIST preset and fills defaults', () => {
    const s = parseModelSpec(mnistMlp());
    assert.equal(s.layers.length, 2);
    assert.equal(s.loss, 'softmaxCrossEntropy');
  });

  it('names the field, the expectation and the given value', () => {
    const bad = { input: { shape: [784] }, layers: [{ type: 'dense', units: -3 }] };
    assert.throws(() => parseModelSpec(bad), (e: ConfigError) => e instanceof ConfigError && e.field === 'model.layers[0].units' && /positive/.test(e.message) && /given -3/.test(e.message));
    assert.throws(() => parseModelSpec({ input: { shape: [784] }, layers: [{ type: 'dense', units: 10, activation: 'gelu' }] }), /model\.layers\[0\]\.activation.*given "gelu"/s);
    assert.throws(() => parseModelSpec({ input: { shape: [784] }, layers: [] }), /model\.layers: expected at least one layer/);
    assert.throws(() => parseModelSpec({ input: { shape: [784] }, layers: [{ type: 'dense', units: 10, unitz: 3 }] }), /unitz/);
    assert.throws(() => parseModelSpec({ layers: [{ type: 'dense', units: 10 }] }), /model\.input/);
    assert.throws(() => parseModelSpec({ input: { shape: [784] }, layers: [{ type: 'conv9' }] }), /model\.layers\[0\]\.type/);
  });
});

describe('initialisation', () => {
  it('same seed, same weights bit for bit; another seed differs', () => {
    const mk = (seed: number) => {
      const t = new Tower(dev, mnistMlp(), { maxBatch: 4 });
      t.initWeights(seed);
      const w = t.readWeights();
      t.dispose();
      return w;
    };
    const a = mk(7), b = mk(7), c = mk(8);
    for (const [name, v] of a) {
      assert.deepEqual(Buffer.from(v.buffer), Buffer.from(b.get(name)!.buffer), `${name} differs for the same seed`);
    }
    assert.notDeepEqual(Array.from(a.get('dense_0/kernel')!.slice(0, 10)), Array.from(c.get('dense_0/kernel')!.slice(0, 10)));
    const k = a.get('dense_0/kernel')!;
    const max = k.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assert.ok(max <= 0.2 + 1e-6, `truncated normal(0.1) must stay within 2 stddev, max |w| = ${max}`);
    assert.ok(a.get('dense_0/bias')!.every((x) => Math.abs(x - 0.1) < 1e-7));
  });
});

describe('schedules', () => {
  it('exponential decay with staircase, piecewise, cosine', () => {
    const s = parseSchedule({ type: 'exponential', lr: 0.1, decayRate: 0.5, decaySteps: 10, staircase: true });
    assert.equal(learningRate(s, 9), 0.1);
    assert.equal(learningRate(s, 10), 0.05);
    assert.equal(learningRate(s, 25), 0.025);
    const c = parseSchedule({ type: 'exponential', lr: 0.1, decayRate: 0.5, decaySteps: 10 });
    assert.ok(Math.abs(learningRate(c, 5) - 0.1 * Math.SQRT1_2) < 1e-12);
    const p = parseSchedule({ type: 'piecewise', boundaries: [10, 20], values: [1, 0.5, 0.1] });
    assert.deepEqual([0, 10, 11, 20, 21].map((t) => learningRate(p, t)), [1, 1, 0.5, 0.5, 0.1]);
    assert.throws(() => parseSchedule({ type: 'piecewise', boundaries: [10], values: [1] }), /values\.length/);
    const cos = parseSchedule({ type: 'cosine', lr: 1, decaySteps: 100 });
    assert.ok(Math.abs(learningRate(cos, 50) - 0.5) < 1e-12);
  });
});

describe(`a whole tower step on ${dev.name} vs the float64 reference`, () => {
  const specs: Array<[string, ModelSpec]> = [
    ['mlp relu', { input: { shape: [6, 5] }, layers: [{ type: 'flatten' }, { type: 'dense', units: 13, activation: 'relu', l2: 0.01 }, { type: 'dense', units: 4, l2: 0.01 }] }],
    ['sigmoid/tanh, mean loss', { input: { shape: [9] }, layers: [{ type: 'dense', units: 8, activation: 'sigmoid' }, { type: 'dense', units: 7 }, { type: 'tanh' }, { type: 'dense', units: 3 }], loss: 'mean' }],
  ];
  for (const [label, spec] of specs) {
    for (const optimizer of [{ type: 'sgd', lr: 0.1 }, { type: 'momentum', lr: 0.1, momentum: 0.9, nesterov: true }, { type: 'adam', lr: 0.01, beta1: 0.5, beta2: 0.9 }] as const) {
      it(`${label}, ${optimizer.type}, clip 0.5, EMA: 3 steps agree to 1e-5`, async () => {
        const training = { optimizer, clipNorm: 0.5, emaDecay: 0.9 };
        const ref = new ReferenceBackend();
        const a = new Tower(dev, spec, { maxBatch: 11, training });
        const b = new Tower(ref, spec, { maxBatch: 11, training });
        a.initWeights(3);
        b.initWeights(3);
        const r = testRandom(5);
        for (let step = 1; step <= 3; step++) {
          const B = step === 2 ? 11 : 7;  // two batch sizes: two compiled programs
          const x = Float32Array.from({ length: B * a.inputDim }, () => r() * 2 - 1);
          const labels = Int32Array.from({ length: B }, () => Math.floor(r() * a.outputDim));
          await a.trainStep({ kind: 'direct', x, labels }, 0.1, step);
          await b.trainStep({ kind: 'direct', x, labels }, 0.1, step);
          assert.ok(relErr([a.dataLoss()], [b.dataLoss()]) < 1e-5, `loss at step ${step}: ${a.dataLoss()} vs ${b.dataLoss()}`);
        }
        for (const which of ['w', 'g', 'ema'] as const) {
          const wa = a.readWeights(which), wb = b.readWeights(which);
          for (const [name, v] of wa) assert.ok(relErr(v, wb.get(name)!) < 1e-5, `${which} ${name}: rel err ${relErr(v, wb.get(name)!)}`);
        }
        a.dispose();
        b.dispose();
      });
    }
  }

  it('rejects a batch of the wrong shape or with bad labels, changing nothing', async () => {
    const t = new Tower(dev, mnistMlp(16), { maxBatch: 8, training: { optimizer: { type: 'sgd', lr: 0.1 } } });
    t.initWeights(1);
    const before = t.readWeights();
    await assert.rejects(t.trainStep({ kind: 'direct', x: new Float32Array(10), labels: new Int32Array(2) }, 0.1, 1), /x has 10 values, expected 2 x 784/);
    await assert.rejects(t.trainStep({ kind: 'direct', x: new Float32Array(2 * 784), labels: Int32Array.from([1, 12]) }, 0.1, 1), /label 12 at row 1/);
    await assert.rejects(t.trainStep({ kind: 'direct', x: new Float32Array(9 * 784), labels: new Int32Array(9) }, 0.1, 1), /expected 1\.\.8 examples/);
    for (const [name, v] of t.readWeights()) assert.deepEqual(v, before.get(name));
    t.dispose();
  });
});
