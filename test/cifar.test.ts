// Seed 000's CIFAR-10 CNN: the binary-file reader's errors, the generated data set, the crop/flip parameters, a whole
// conv tower step vs the float64 reference and vs finite differences, the CNN learning on 2 CPU towers, and the
// 1-tower vs 2-tower gradient of one step.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CIFAR10_FILES, cropParams, generateCifar10, loadCifar10, parseCifar10Batch } from '../src/data/cifar10.js';
import { DataError } from '../src/data/idx.js';
import { cifar10Cnn, parseModelSpec, type ModelSpec } from '../src/model/spec.js';
import { cifar10Training } from '../src/model/presets.js';
import { Tower } from '../src/model/tower.js';
import { ReferenceBackend } from '../src/reference/reference-backend.js';
import { referenceKernels } from '../src/reference/kernels.js';
import { relErr, testRandom } from '../src/reference/relerr.js';
import { cifar10, type RunEvent } from '../src/runtime.js';
import { ConfigError } from '../src/util/validate.js';
import { openTestDevice } from './support/device.js';
import { withRuntime } from './support/runtime.js';

const dev = openTestDevice();
after(() => dev.close());

/** One CIFAR record: label, then the R, G, B planes (32x32 each). */
function record(label: number, pixel: (c: number, y: number, x: number) => number): Uint8Array {
  const r = new Uint8Array(3073);
  r[0] = label;
  for (let c = 0; c < 3; c++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) r[1 + c * 1024 + y * 32 + x] = pixel(c, y, x);
  return r;
}

describe('CIFAR-10 binary reader', () => {
  it('converts channel-major records to NHWC and keeps the labels', () => {
    const bytes = new Uint8Array(2 * 3073);
    bytes.set(record(3, (c, y, x) => (c * 80 + y + x) % 256), 0);
    bytes.set(record(9, (c, y, x) => (c + 2 * y + 3 * x) % 256), 3073);
    const s = parseCifar10Batch(bytes, 'two.bin');
    assert.equal(s.count, 2);
    assert.deepEqual([...s.labels], [3, 9]);
    for (const [n, y, x, c] of [[0, 0, 0, 0], [0, 5, 7, 2], [1, 31, 30, 1], [1, 2, 3, 0]] as const) {
      const want = n === 0 ? (c * 80 + y + x) % 256 : (c + 2 * y + 3 * x) % 256;
      assert.equal(s.images[n * 3072 + (y * 32 + x) * 3 + c], want, `image ${n} at (${y}, ${x}, ${c})`);
    }
  });

  it('names the file and the problem: wrong size, label > 9, empty, missing file', async () => {
    assert.throws(() => parseCifar10Batch(new Uint8Array(3073 * 2 + 5), 'x.bin'), (e: unknown) => e instanceof DataError && /x\.bin/.test(e.message) && /not a multiple of the 3073-byte record/.test(e.message) && /2 whole records and 5 bytes/.test(e.message));
    const bad = new Uint8Array(3 * 3073);
    bad[3073] = 10;
    assert.throws(() => parseCifar10Batch(bad, 'y.bin'), (e: unknown) => e instanceof DataError && /label 10 of record 1 \(byte offset 3073\) is outside 0\.\.9/.test(e.message));
    assert.throws(() => parseCifar10Batch(new Uint8Array(0), 'z.bin'), /z\.bin: the file is empty/);
    const dir = await mkdtemp(join(tmpdir(), 'towerline-cifar-'));
    try {
      await assert.rejects(loadCifar10('test', dir), (e: unknown) => e instanceof DataError && e.message.includes(join(dir, 'test_batch.bin')) && /file not found/.test(e.message) && /generated/.test(e.message));
      await writeFile(join(dir, 'test_batch.bin'), Buffer.concat([record(1, () => 7), record(8, () => 200)]));
      const s = await loadCifar10('test', dir);
      assert.equal(s.count, 2);
      assert.deepEqual([...s.labels], [1, 8]);
      assert.equal(s.channels, 3);
      await assert.rejects(loadCifar10('train', dir), (e: unknown) => e instanceof DataError && e.message.includes(CIFAR10_FILES.train[0]!));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('generated CIFAR-shaped data and the crop parameters', () => {
  it('is seeded, 32x32x3 u8 with labels in 0..9, and every class appears', () => {
    const a = generateCifar10({ count: 300, seed: 4 }), b = generateCifar10({ count: 300, seed: 4 }), c = generateCifar10({ count: 300, seed: 5 });
    assert.equal(a.images.length, 300 * 3072);
    assert.deepEqual(a.images, b.images);
    assert.deepEqual(a.labels, b.labels);
    assert.notDeepEqual(a.images.subarray(0, 3072), c.images.subarray(0, 3072));
    const counts = new Array(10).fill(0);
    for (const l of a.labels) counts[l]++;
    assert.ok(counts.every((n) => n >= 10), `class counts ${counts}`);
  });

  it('crops are a pure function of (seed, step, example index), in range, independent of the split over towers', () => {
    const g = { height: 32, width: 32, cropHeight: 24, cropWidth: 24 };
    const idx = Int32Array.from({ length: 200 }, (_, i) => (i * 37) % 1000);
    const p = cropParams(7, 12, idx, g);
    assert.deepEqual(p, cropParams(7, 12, idx, g));
    const halves = [...cropParams(7, 12, idx.subarray(0, 77), g), ...cropParams(7, 12, idx.subarray(77), g)];
    assert.deepEqual([...p], halves);
    for (let b = 0; b < 200; b++) {
      assert.ok(p[3 * b]! >= 0 && p[3 * b]! <= 8 && p[3 * b + 1]! >= 0 && p[3 * b + 1]! <= 8 && (p[3 * b + 2] === 0 || p[3 * b + 2] === 1));
    }
    const seen = new Set<number>();
    for (let b = 0; b < 200; b++) seen.add(p[3 * b]!);
    assert.equal(seen.size, 9, 'every vertical offset 0..8 occurs');
    const flips = [...p].filter((_, k) => k % 3 === 2).reduce((a, v) => a + v, 0);
    assert.ok(flips > 70 && flips < 130, `${flips} of 200 flipped`);
    const other = cropParams(7, 13, idx, g);
    assert.ok([...p].filter((v, k) => v === other[k]).length < 0.6 * p.length, 'another step gives other crops');
  });

  it('standardises like TF: zero mean, unit std, a constant image stays finite, the flip mirrors', () => {
    // 2x3x1 image, crop 2x3 (everything), flipped; and a constant 2x3 image
    const src = Uint8Array.from([1, 2, 3, 4, 5, 6, 9, 9, 9, 9, 9, 9]);
    const y = new Float64Array(12);
    referenceKernels.crop_flip_standardize_u8!([src, Int32Array.from([0, 1]), Int32Array.from([0, 0, 1, 0, 0, 0])], [y], { B: 2, R: 2, H: 2, W: 3, C: 1, OH: 2, OW: 3 });
    const sd = Math.sqrt(35 / 12);
    assert.deepEqual([...y.subarray(0, 6)].map((v) => +v.toFixed(9)), [3, 2, 1, 6, 5, 4].map((v) => +((v - 3.5) / sd).toFixed(9)));
    assert.deepEqual([...y.subarray(6)], [0, 0, 0, 0, 0, 0]);
  });
});

// A small net with every layer kind: conv SAME (ReLU), maxpool SAME 3x3/2, LRN, conv VALID, dropout, fc.
const smallCnn: ModelSpec = {
  name: 'small-cnn',
  input: { shape: [8, 8, 3] },
  layers: [
    { type: 'conv2d', filters: 4, kernel: [3, 3], activation: 'relu', kernelInit: { type: 'truncatedNormal', stddev: 0.3 }, biasInit: { type: 'constant', value: 0.1 } },
    { type: 'maxpool', pool: [3, 3], strides: [2, 2], padding: 'same' },
    { type: 'lrn', depthRadius: 2, bias: 1, alpha: 0.2, beta: 0.75 },
    { type: 'conv2d', filters: 5, kernel: [3, 3], padding: 'valid' },
    { type: 'tanh' },
    { type: 'dropout', rate: 0.3 },
    { type: 'flatten' },
    { type: 'dense', units: 6, activation: 'sigmoid' },
    { type: 'dense', units: 3 },
  ],
};

describe('a conv tower', () => {
  it('plans the CIFAR CNN: parameter shapes, the 24x24x3 input, 10 outputs', () => {
    const t = new Tower(dev, cifar10Cnn(), { maxBatch: 2 });
    assert.deepEqual(t.params.map((p) => `${p.name}:${p.shape.join('x')}:${p.l2}`), [
      'conv1/kernel:5x5x3x64:0', 'conv1/bias:64:0', 'conv2/kernel:5x5x64x64:0', 'conv2/bias:64:0',
      'local3/kernel:2304x384:0.004', 'local3/bias:384:0', 'local4/kernel:384x192:0.004', 'local4/bias:192:0',
      'softmax_linear/kernel:192x10:0', 'softmax_linear/bias:10:0',
    ]);
    assert.equal(t.inputDim, 24 * 24 * 3);
    assert.equal(t.outputDim, 10);
    t.initWeights(1);
    const w = t.readWeights();
    const maxAbs = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assert.ok(maxAbs(w.get('conv1/kernel')!) <= 0.1 + 1e-6 && maxAbs(w.get('conv1/kernel')!) > 0.09, 'truncated normal 5e-2');
    assert.ok(w.get('conv1/bias')!.every((x) => x === 0) && w.get('conv2/bias')!.every((x) => Math.abs(x - 0.1) < 1e-7));
    assert.ok(maxAbs(w.get('local3/kernel')!) <= 0.08 + 1e-6 && w.get('local4/bias')!.every((x) => Math.abs(x - 0.1) < 1e-7));
    assert.ok(maxAbs(w.get('softmax_linear/kernel')!) <= 2 / 192 + 1e-7);
    t.dispose();
    assert.throws(() => new Tower(dev, { input: { shape: [784] }, layers: [{ type: 'conv2d', filters: 2, kernel: [3, 3] }] }, { maxBatch: 1 }), /needs an image input \(H, W, C\), got shape \[784\]/);
    assert.throws(() => new Tower(dev, { input: { shape: [2, 2, 1] }, layers: [{ type: 'conv2d', filters: 2, kernel: [3, 3], padding: 'valid' }] }, { maxBatch: 1 }), /VALID window of 3 does not fit an input of 2/);
    assert.throws(() => parseModelSpec({ input: { shape: [4, 4, 1] }, layers: [{ type: 'dropout', rate: 1 }] }), (e: unknown) => e instanceof ConfigError && /rate/.test(e.message));
  });

  for (const optimizer of [{ type: 'sgd', lr: 0.1 }, { type: 'adam', lr: 0.01, beta1: 0.5, beta2: 0.9 }] as const) {
    it(`every layer kind, ${optimizer.type}: 3 steps on ${dev.name} agree with the float64 reference to 1e-5`, async () => {
      const training = { optimizer, clipNorm: 2 };
      const a = new Tower(dev, smallCnn, { maxBatch: 9, training });
      const b = new Tower(new ReferenceBackend(), smallCnn, { maxBatch: 9, training });
      a.initWeights(3);
      b.initWeights(3);
      const r = testRandom(5);
      for (let step = 1; step <= 3; step++) {
        const B = step === 2 ? 9 : 5;
        const x = Float32Array.from({ length: B * a.inputDim }, () => r() * 2 - 1);
        const labels = Int32Array.from({ length: B }, () => Math.floor(r() * 3));
        await a.trainStep({ kind: 'direct', x, labels }, 0.1, step);
        await b.trainStep({ kind: 'direct', x, labels }, 0.1, step);
        assert.ok(relErr([a.dataLoss()], [b.dataLoss()]) < 1e-5, `loss at step ${step}: ${a.dataLoss()} vs ${b.dataLoss()}`);
      }
      for (const which of ['w', 'g'] as const) {
        const wa = a.readWeights(which), wb = b.readWeights(which);
        for (const [name, v] of wa) assert.ok(relErr(v, wb.get(name)!) < 1e-5, `${which} ${name}: rel err ${relErr(v, wb.get(name)!)}`);
      }
      a.dispose();
      b.dispose();
    });
  }

  it('the whole network gradient (conv, pool, LRN, dropout, fc) matches finite differences on the reference', async () => {
    const ref = new ReferenceBackend();
    const t = new Tower(ref, smallCnn, { maxBatch: 4, training: { optimizer: { type: 'sgd', lr: 0.1 } } });
    t.initWeights(9);
    const r = testRandom(21);
    const x = Float32Array.from({ length: 4 * t.inputDim }, () => r() * 2 - 1);
    const labels = Int32Array.from([0, 2, 1, 2]);
    const lossAt = async (): Promise<number> => {
      await t.trainStep({ kind: 'direct', x, labels }, 0, 4); // lr 0: the weights stay; step 4: one fixed dropout mask
      return t.dataLoss();
    };
    await lossAt();
    const grads = t.readWeights('g');
    const weights = t.readWeights('w');
    const eps = 1e-6;
    let checked = 0;
    for (const [name, w] of weights) {
      const g = grads.get(name)!;
      for (let k = 0; k < 4; k++) {
        const i = Math.floor(r() * w.length);
        const orig = w[i]!;
        const at = async (v: number) => {
          w[i] = v;
          t.writeWeights(weights);
          return lossAt();
        };
        const fd = ((await at(orig + eps)) - (await at(orig - eps))) / (2 * eps);
        w[i] = orig;
        t.writeWeights(weights);
        assert.ok(Math.abs(fd - g[i]!) <= 1e-6 + 1e-4 * Math.abs(fd), `${name}[${i}]: gradient ${g[i]} vs finite difference ${fd}`);
        checked++;
      }
    }
    assert.equal(checked, 4 * t.params.length);
    t.dispose();
  });

  it('dropout is on at training (a fresh mask per step) and off at evaluation', async () => {
    const spec: ModelSpec = { input: { shape: [4, 4, 1] }, layers: [{ type: 'flatten' }, { type: 'dense', units: 64, activation: 'relu' }, { type: 'dropout', rate: 0.5 }, { type: 'dense', units: 10 }] };
    const t = new Tower(dev, spec, { maxBatch: 8, training: { optimizer: { type: 'sgd', lr: 0.01 } } });
    t.initWeights(2);
    const images = Uint8Array.from({ length: 8 * 16 }, (_, i) => (i * 29) % 256);
    const ds = t.uploadDataset(images, new Uint8Array(8), 8);
    const e1 = await t.evaluate(ds), e2 = await t.evaluate(ds);
    assert.equal(e1.loss, e2.loss, 'evaluation is deterministic: no dropout');
    const idx = Int32Array.from({ length: 8 }, (_, i) => i);
    const losses: number[] = [];
    for (let step = 1; step <= 2; step++) {
      t.writeWeights(new Map([...t.readWeights()]));
      await t.trainStep({ kind: 'indices', dataset: ds, indices: idx }, 0, step);
      losses.push(t.dataLoss());
    }
    assert.notEqual(losses[0], losses[1], 'another step, another mask');
    assert.notEqual(losses[0], e1.loss);
    t.dispose();
  });
});


describe('the CIFAR-10 CNN on CPU towers (generated data)', () => {
  const data = (batchSize: number) => cifar10({ batchSize, generated: { count: 2400, testCount: 500, seed: 1 } });

  it('1 tower and 2 towers give the same gradient for one step (random crops and flips included, rel err < 1e-5)', async () => {
    const oneStep = (devices: string) =>
      withRuntime(devices, async (rt) => {
        await rt.train({ model: cifar10Cnn(), optimizer: { type: 'sgd', lr: 0.1 }, data: data(64), steps: 1, seed: 3 }).done;
        return (await rt.readGradients())[0]!;
      });
    const one = await oneStep('cpu:0');
    const two = await oneStep('cpu*2');
    for (const [name, g] of one) {
      const err = relErr(two.get(name)!, g);
      assert.ok(err < 1e-5, `${name}: rel err ${err}`);
    }
  });

  // CI parameters: 2 CPU towers, global batch 32 (16 per tower), 186 steps (3 epochs of 2400 generated images), SGD 0.1.
  it('learns on 2 towers: test loss far below ln(10) = 2.30, accuracy far above chance', async () => {
    await withRuntime('cpu*2', async (rt) => {
      const events: RunEvent[] = [];
      const t0 = performance.now();
      const run = rt.train({
        model: cifar10Cnn(),
        ...cifar10Training({ batchSize: 32, examplesPerEpoch: 2400 }),
        data: data(32),
        epochs: 3,
        seed: 1,
        evaluate: true,
      });
      run.events$.subscribe((e) => events.push(e));
      let steps = 0;
      run.steps$.subscribe(() => steps++);
      const summary = await run.done;
      const evals = events.filter((e): e is Extract<RunEvent, { type: 'evaluation' }> => e.type === 'evaluation');
      const last = evals[evals.length - 1]!;
      console.log(`# CIFAR CNN, 2 towers, batch 32, ${summary.steps} steps: ${evals.map((e) => `epoch ${e.epoch}: test loss ${e.loss.toFixed(3)} accuracy ${e.accuracy.toFixed(3)}`).join('; ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      assert.equal(summary.steps, 3 * 75);
      assert.ok(steps >= 1);
      assert.ok(last.loss < 1.2, `test loss ${last.loss} should be far below 2.30`);
      assert.ok(last.accuracy > 0.5, `test accuracy ${last.accuracy} should be far above 0.1`);
      assert.deepEqual(summary.evaluation, { loss: last.loss, accuracy: last.accuracy });
    });
  });

  it('rejects bad CIFAR options and missing files with clear errors', async () => {
    await withRuntime('cpu:0', async (rt) => {
      assert.throws(
        () => rt.train({ model: cifar10Cnn(), optimizer: { type: 'sgd', lr: 0.1 }, data: cifar10({ batchSize: 8, dir: '/x', generated: { count: 10 } }), steps: 1 }),
        (e: unknown) => e instanceof ConfigError && /dir .* or generated, not both/.test(e.message),
      );
      await assert.rejects(
        rt.train({ model: cifar10Cnn(), optimizer: { type: 'sgd', lr: 0.1 }, data: cifar10({ batchSize: 8, dir: '/nonexistent/cifar' }), steps: 1 }).done,
        (e: unknown) => e instanceof DataError && /data_batch_1\.bin: file not found/.test(e.message),
      );
    });
  });
});
