// Model spec validation, seeded initialisation, schedules, and a whole tower step on the device vs the float64 reference.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelSpec, mnistMlp, type ModelSpec } from '../src/model/spec.js';
import { readFileSync } from 'node:fs';
import { FaultPoint, Tower } from '../src/model/tower.js';
import { placementOf } from '../src/model/placement.js';
import { cifar10Cnn } from '../src/model/spec.js';
import { notFault, recordScenario, scenarios } from './support/op-scenarios.js';
import { RecordingBackend } from './support/recording-backend.js';
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

describe('op lists', () => {
  // Recorded by test/fixtures/make-op-lists.ts from the tower as it was before its layers became modules: the
  // programs (and so the numerics) of every preset and of every layer kind must not change unless meant to.
  const golden = JSON.parse(readFileSync(new URL('./fixtures/op-lists.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  for (const s of scenarios) {
    it(`${s.label}: every program is the recorded one (fault points aside), and dispose frees every buffer`, async () => {
      const { rec, tower } = await recordScenario(s);
      assert.deepEqual(rec.snapshot(notFault), golden[s.label]);
      tower.dispose();
      assert.equal(rec.live(), 0);
    });
  }

  it("has a '@fault' at each fault point of every step program, and none elsewhere", async () => {
    const { rec, tower } = await recordScenario(scenarios[3]!);
    const b = tower.network.buffers;
    const steps = rec.lists.filter((ops) => ops.some((o) => o.kernel === '@guard'));
    assert.equal(steps.length, 4, 'four step programs: direct, dataset alone, dataset in a collective, random crops');
    for (const ops of steps) {
      const at = (kernel: string, nth = 0) => ops.map((o, i) => (o.kernel === kernel ? i : -1)).filter((i) => i >= 0)[nth]!;
      const faults = ops.map((o, i) => ({ o, i })).filter(({ o }) => o.kernel === '@fault');
      assert.deepEqual(faults.map(({ o }) => o.attrs!.point), Object.values(FaultPoint), 'one per point, in order');
      const pos = Object.fromEntries(Object.entries(FaultPoint).map(([name, p]) => [name, faults[p]!.i])) as Record<keyof typeof FaultPoint, number>;
      const out = Object.fromEntries(Object.entries(FaultPoint).map(([name, p]) => [name, faults[p]!.o.outputs])) as Record<keyof typeof FaultPoint, number[]>;
      // forward: right after the first mark, before the first layer's forward op; output the batch input.
      assert.equal(pos.forward, at('@mark', 0) + 1);
      assert.deepEqual(out.forward, [b.x]);
      // backward: right after the second mark, before the loss's backward; output the data loss.
      assert.equal(pos.backward, at('@mark', 1) + 1);
      assert.equal(ops[pos.backward + 1]!.kernel, 'softmax_xent_backward');
      assert.deepEqual(out.backward, [b.loss]);
      // gradient: after the last backward op (the first conv2d's: the layers before it need no gradient), before
      // the local norms; output the gradient arena.
      assert.equal(ops[pos.gradient - 1]!.kernel, 'conv2d_backward');
      assert.deepEqual(ops[pos.gradient - 1]!.outputs, [tower.params[0]!.g, tower.params[1]!.g]);
      // A lone tower takes no local norm here, only the fills (Note [Lone tower's local norms]): a parameter with an
      // L2 term takes it in its tail's first pass, one without none (sum_squares into the global norm only).
      const collective = ops.findIndex((o) => o.kernel === '@collective');
      const p0 = tower.params[0]!;
      assert.equal(ops[pos.gradient + 1]!.kernel, 'fill');
      if (collective < 0) {
        assert.ok(!ops.some((o) => o.kernel === 'sum_squares' && tower.params.some((p) => p.localNormSq === o.outputs[0])), 'no local sum_squares on a lone tower');
        const bias = tower.params.find((p) => p.l2 === 0)!;
        assert.ok(ops.some((o) => o.kernel === 'sum_squares' && o.inputs[0] === bias.g && o.outputs[0] === tower.network.buffers.normSq), 'the L2-free parameter is summed into the global norm');
        if (p0.l2 > 0) assert.ok(ops.some((o) => o.kernel === 'l2_grad_norm' && o.inputs[0] === p0.w && o.outputs[3] === p0.localNormSq));
      } else {
        assert.equal(ops[pos.gradient + 2]!.kernel, 'sum_squares');
        assert.deepEqual(ops[pos.gradient + 2]!.inputs, [p0.g]);
      }
      assert.deepEqual(out.gradient, [tower.gradArena]);
      // reduce and received: around the collective (adjacent when the tower is alone), between marks 3 and 4.
      assert.equal(pos.reduce, at('@mark', 2) + 1);
      assert.equal(pos.received, collective >= 0 ? collective + 1 : pos.reduce + 1);
      if (collective >= 0) assert.equal(collective, pos.reduce + 1);
      assert.equal(pos.received + 1, at('@mark', 3));
      assert.deepEqual([...out.reduce, ...out.received], [tower.gradArena, tower.gradArena]);
      // update: right after the fourth mark, before the first update op; output the weight arena.
      assert.equal(pos.update, at('@mark', 3) + 1);
      assert.equal(ops[pos.update + 1]!.kernel, 'fill');
      assert.ok(ops.slice(pos.update).some((o) => o.kernel === 'fused_adam_update'));
      assert.deepEqual(out.update, [tower.weightArena]);
    }
    for (const ops of rec.lists.filter((o) => !steps.includes(o))) assert.ok(!ops.some((o) => o.kernel === '@fault'), 'evaluation, hash and broadcast programs have no fault points');
    tower.dispose();
  });

  it('trainStep arms a fault by its numeric point for that run only; a bad fault is refused before anything runs', async () => {
    const rec = new RecordingBackend();
    const t = new Tower(rec, mnistMlp(8), { maxBatch: 4, training: { optimizer: { type: 'sgd', lr: 0.1 } } });
    const batch = { kind: 'direct' as const, x: new Float32Array(2 * 784), labels: Int32Array.from([0, 1]) };
    await t.trainStep(batch, 0.1, 1, { fault: { point: 'received', kind: 'bitflip', index: 3 } });
    await t.trainStep(batch, 0.1, 2);
    assert.deepEqual(rec.runs.map((r) => r.fault), [{ point: 4, kind: 'bitflip', index: 3 }, undefined]);
    assert.equal(rec.runs[0]!.program, rec.runs[1]!.program, 'one compiled step program, armed per run');
    await assert.rejects(t.trainStep(batch, 0.1, 3, { fault: { point: 'loss' as 'forward', kind: 'nan' } }), (e: Error) => e instanceof TypeError && /fault\.point: expected one of forward, backward, gradient, reduce, received, update; given "loss"/.test(e.message));
    await assert.rejects(t.trainStep(batch, 0.1, 3, { fault: { point: 'update', kind: 'melt' as 'nan' } }), /fault\.kind: expected one of stall, nan, bitflip, throw; given "melt"/);
    assert.equal(rec.runs.length, 2);
    t.dispose();
  });

  it(`a NaN armed at 'gradient' on ${dev.name} trips the guard, skips the update and names the tensor`, async () => {
    const t = new Tower(dev, mnistMlp(8), { maxBatch: 4, training: { optimizer: { type: 'sgd', lr: 0.1 } } });
    t.initWeights(1);
    const before = t.readWeights();
    const batch = { kind: 'direct' as const, x: new Float32Array(2 * 784).fill(0.5), labels: Int32Array.from([0, 1]) };
    const bias0 = t.params[1]!;
    const r = await t.trainStep(batch, 0.1, 1, { fault: { point: 'gradient', kind: 'nan', index: bias0.offset + 2 } });
    assert.equal(r.skipped, true);
    assert.ok(!Number.isFinite(r.gradNorm));
    assert.equal(t.firstNonFiniteLocal(), undefined, 'a lone step takes no local norm of an L2-free tensor (Note [Lone tower\'s local norms])');
    await t.refreshLocalNorms();
    assert.equal(t.firstNonFiniteLocal(), bias0.name);
    for (const [name, v] of t.readWeights()) assert.deepEqual(v, before.get(name), `${name} must not change on a skipped step`);
    const ok = await t.trainStep(batch, 0.1, 2);
    assert.equal(ok.skipped, false, 'the fault was armed for one run only');
    assert.ok(Number.isFinite(ok.gradNorm));
    t.dispose();
  });
});

describe('layer modules', () => {
  it('placementOf names the real kernels of each parameter (conv biases are conv2d kernels)', () => {
    const t = new Tower(new RecordingBackend(), cifar10Cnn(), { maxBatch: 2, training: { optimizer: { type: 'momentum', lr: 0.1 }, emaDecay: 0.99 } });
    const pl = placementOf(t);
    assert.deepEqual(pl.map((p) => p.name), ['conv1/kernel', 'conv1/bias', 'conv2/kernel', 'conv2/bias', 'local3/kernel', 'local3/bias', 'local4/kernel', 'local4/bias', 'softmax_linear/kernel', 'softmax_linear/bias']);
    const by = new Map(pl.map((p) => [p.name, p]));
    assert.deepEqual(by.get('conv2/bias'), { name: 'conv2/bias', shape: [64], numel: 64, offset: 5 * 5 * 3 * 64 + 64 + 5 * 5 * 64 * 64, forward: 'conv2d_forward', backward: 'conv2d_backward', update: ['sum_squares', 'fused_momentum_update'] });
    assert.deepEqual(by.get('local3/kernel')!.update, ['l2_grad_norm', 'fused_momentum_update']);
    assert.equal(by.get('softmax_linear/bias')!.forward, 'dense_forward');
    assert.equal(pl.at(-1)!.offset + pl.at(-1)!.numel, t.paramCount);
    t.dispose();
  });

  it('layers keep their validation messages', () => {
    const rec = new RecordingBackend();
    assert.throws(() => new Tower(rec, { input: { shape: [4, 3] }, layers: [{ type: 'reshape', shape: [5] }, { type: 'dense', units: 2 }] }, { maxBatch: 1 }), /model 'model' layer 0 \(reshape\): cannot reshape \[4, 3\] \(12 values\) to \[5\] \(5 values\)/);
    assert.throws(() => new Tower(rec, { input: { shape: [6, 6, 1] }, layers: [{ type: 'maxpool', name: 'p', pool: [7, 7] }, { type: 'dense', units: 2 }] }, { maxBatch: 1 }), /layer 0 \(maxpool 'p'\): a VALID window of 7 does not fit an input of 6/);
    assert.throws(() => new Tower(rec, { name: 'm', input: { shape: [6] }, layers: [{ type: 'relu' }, { type: 'dropout', rate: 0.5 }] }, { maxBatch: 1 }), /model 'm' has no dense or conv2d layer: nothing to train/);
    assert.equal(rec.live(), 0, 'a refused model leaves no buffers behind');
  });
});
