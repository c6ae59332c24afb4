// The float64 reference checked against finite differences, hand-computed optimizer steps and the contract's errors.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { referenceKernels as K, type RefTensor } from '../src/reference/kernels.js';

// The conv tests use K as the output-channel count; K_ names the kernel table there.
const K_ = K;
import { ReferenceBackend } from '../src/reference/reference-backend.js';
import { relErr, testRandom } from '../src/reference/relerr.js';

const TOL = 1e-4;
const H = 1e-6;

/** Random values in ±[0.1, 1]: non-zero and away from relu's kink. */
function randn(rng: () => number, n: number): Float64Array {
  const a = new Float64Array(n);
  for (let k = 0; k < n; k++) a[k] = (rng() < 0.5 ? -1 : 1) * (0.1 + 0.9 * rng());
  return a;
}

function randLabels(rng: () => number, n: number, C: number): Int32Array {
  const a = new Int32Array(n);
  for (let k = 0; k < n; k++) a[k] = Math.floor(rng() * C);
  return a;
}

/** Central finite differences of f with respect to every element of param (perturbed in place, then restored). */
function fdGrad(f: () => number, param: Float64Array, h = H): Float64Array {
  const g = new Float64Array(param.length);
  for (let k = 0; k < param.length; k++) {
    const saved = param[k];
    param[k] = saved + h;
    const fp = f();
    param[k] = saved - h;
    const fm = f();
    param[k] = saved;
    g[k] = (fp - fm) / (2 * h);
  }
  return g;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

function assertGrad(analytic: Float64Array, fd: Float64Array, what: string): void {
  const e = relErr(analytic, fd);
  assert.ok(e < TOL, `${what}: rel err ${e} >= ${TOL}`);
  // Guard against a vacuous pass on an all-zero gradient.
  assert.ok(fd.some((v) => Math.abs(v) > 1e-8), `${what}: finite-difference gradient is all zero`);
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = 1e-12): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let k = 0; k < expected.length; k++) {
    const d = Math.abs(actual[k] - expected[k]);
    assert.ok(d <= tol * Math.max(1, Math.abs(expected[k])), `${what}[${k}]: got ${actual[k]}, expected ${expected[k]}`);
  }
}

function hyper(lr: number, t: number, w: number): Float64Array {
  return Float64Array.from([lr, t, w]);
}

describe('kernel set', () => {
  it('implements exactly the kernels named in docs/kernels.md', () => {
    const md = readFileSync(new URL('../docs/kernels.md', import.meta.url), 'utf8');
    const named = [...md.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]).sort();
    assert.ok(named.length > 20, 'contract table parsed');
    assert.deepEqual(new ReferenceBackend().kernelNames(), named);
  });
});

describe('layer gradients vs finite differences', () => {
  const shapes: Array<[number, number, number]> = [[1, 1, 1], [1, 7, 3], [3, 7, 5], [4, 2, 9]];
  for (const [B, I, O] of shapes) {
    it(`dense B=${B} I=${I} O=${O}: dW, db, dx`, () => {
      const rng = testRandom(100 + B * 31 + I * 7 + O);
      const x = randn(rng, B * I), W = randn(rng, I * O), b = randn(rng, O), r = randn(rng, B * O);
      const y = new Float64Array(B * O);
      const attrs = { B, I, O };
      const objective = (): number => {
        K.dense_forward([x, W, b], [y], attrs);
        return dot(r, y);
      };
      const dW = new Float64Array(I * O), db = new Float64Array(O), dx = new Float64Array(B * I);
      K.dense_backward([x, W, r], [dW, db, dx], attrs);
      assertGrad(dW, fdGrad(objective, W), 'dW');
      assertGrad(db, fdGrad(objective, b), 'db');
      assertGrad(dx, fdGrad(objective, x), 'dx');
    });
  }

  it('dense_backward accumulate=1 adds to dW and db, overwrites dx; dx is optional', () => {
    const B = 3, I = 4, O = 2;
    const rng = testRandom(7);
    const x = randn(rng, B * I), W = randn(rng, I * O), dy = randn(rng, B * O);
    const dW0 = new Float64Array(I * O), db0 = new Float64Array(O), dx0 = new Float64Array(B * I);
    K.dense_backward([x, W, dy], [dW0, db0, dx0], { B, I, O });
    const dW = randn(rng, I * O), db = randn(rng, O), dx = randn(rng, B * I);
    const dWstart = dW.slice(), dbStart = db.slice();
    K.dense_backward([x, W, dy], [dW, db, dx], { B, I, O, accumulate: 1 });
    assertClose(dW, dWstart.map((v, k) => v + dW0[k]), 'dW accumulated');
    assertClose(db, dbStart.map((v, k) => v + db0[k]), 'db accumulated');
    assertClose(dx, dx0, 'dx overwritten');
    const dW2 = new Float64Array(I * O), db2 = new Float64Array(O);
    K.dense_backward([x, W, dy], [dW2, db2], { B, I, O });
    assertClose(dW2, dW0, 'dW without dx');
  });

  const activations: Array<[string, string]> = [
    ['relu_forward', 'relu_backward'],
    ['sigmoid_forward', 'sigmoid_backward'],
    ['tanh_forward', 'tanh_backward'],
  ];
  for (const [fwd, bwd] of activations) {
    for (const N of [1, 7, 64]) {
      it(`${fwd.replace('_forward', '')} N=${N}`, () => {
        const rng = testRandom(N * 13 + fwd.length);
        const x = randn(rng, N), r = randn(rng, N), y = new Float64Array(N);
        x[0] = Math.abs(x[0]); // at least one active unit, so relu's gradient is not trivially zero
        const objective = (): number => {
          K[fwd]([x], [y], { N });
          return dot(r, y);
        };
        K[fwd]([x], [y], { N });
        const dx = new Float64Array(N);
        K[bwd]([y, r], [dx], { N });
        const fd = fdGrad(objective, x);
        assertGrad(dx, fd, `${bwd} N=${N}`);
        // dx may alias dy.
        K[fwd]([x], [y], { N });
        const alias = r.slice();
        K[bwd]([y, alias], [alias], { N });
        assertClose(alias, dx, `${bwd} aliased`);
      });
    }
  }

  it('sigmoid is stable for large |x| and matches 1/(1+e^-x)', () => {
    const x = Float64Array.from([-1000, -40, -1, 0, 1, 40, 1000]);
    const y = new Float64Array(x.length);
    K.sigmoid_forward([x], [y], { N: x.length });
    assert.ok(y.every((v) => Number.isFinite(v)));
    assert.equal(y[0], 0);
    assert.equal(y[6], 1);
    assert.equal(y[3], 0.5);
    assertClose([y[2], y[4]], [1 / (1 + Math.E), 1 / (1 + 1 / Math.E)], 'sigmoid(±1)');
  });
});

describe('loss gradients vs finite differences', () => {
  for (const [B, C] of [[1, 2], [3, 5], [4, 10], [1, 1]] as Array<[number, number]>) {
    it(`softmax_xent B=${B} C=${C}: dlogits`, () => {
      const rng = testRandom(B * 100 + C);
      const logits = randn(rng, B * C).map((v) => 3 * v);
      const labels = randLabels(rng, B, C);
      const hy = hyper(0.1, 1, 1 / B);
      const loss = new Float64Array(1), probs = new Float64Array(B * C);
      const lossFn = (): number => {
        K.softmax_xent_forward([logits, labels, hy], [loss, probs], { B, C });
        return loss[0];
      };
      lossFn();
      for (let r = 0; r < B; r++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += probs[r * C + c];
        assertClose([s], [1], `probs row ${r} sums to 1`);
      }
      const dlogits = new Float64Array(B * C);
      K.softmax_xent_backward([probs, labels, hy], [dlogits], { B, C });
      const fd = fdGrad(lossFn, logits);
      if (C === 1) {
        // One class: the loss is identically 0, and so is the gradient.
        assert.ok(dlogits.every((v) => v === 0) && fd.every((v) => Math.abs(v) < 1e-9));
        return;
      }
      assertGrad(dlogits, fd, 'dlogits');
    });
  }

  it('softmax_xent loss is weighted by hyper[2], stable for huge logits, and matches -log p', () => {
    const logits = Float64Array.from([1000, 0, -1000, 1, 2, 3]);
    const labels = Int32Array.from([1, 2]);
    const loss = new Float64Array(1), probs = new Float64Array(6);
    K.softmax_xent_forward([logits, labels, hyper(0, 1, 0.5)], [loss, probs], { B: 2, C: 3 });
    // Row 0: logsumexp ≈ 1000, −log p[1] = 1000. Row 1: log(e+e²+e³) − 3.
    const row1 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)) - 3;
    assertClose(loss, [0.5 * (1000 + row1)], 'loss');
    assert.ok(probs.every((v) => Number.isFinite(v)));
  });

  for (const [B, C] of [[1, 1], [3, 7], [5, 2]] as Array<[number, number]>) {
    it(`mean B=${B} C=${C}: dx`, () => {
      const rng = testRandom(B * 17 + C);
      const x = randn(rng, B * C), hy = hyper(0, 1, 1 / (B + 1));
      const loss = new Float64Array(1);
      const lossFn = (): number => {
        K.mean_forward([x, hy], [loss], { B, C });
        return loss[0];
      };
      const dx = new Float64Array(B * C);
      K.mean_backward([hy], [dx], { B, C });
      assertGrad(dx, fdGrad(lossFn, x), 'mean dx');
    });
  }

  for (const N of [1, 9, 100]) {
    it(`l2 N=${N}: l2_backward vs l2_loss; both accumulate`, () => {
      const rng = testRandom(N + 5);
      const w = randn(rng, N), lambda = 0.03;
      const loss = new Float64Array(1);
      const lossFn = (): number => {
        loss[0] = 0;
        K.l2_loss([w], [loss], { N, lambda });
        return loss[0];
      };
      const g = new Float64Array(N);
      K.l2_backward([w], [g], { N, lambda });
      assertGrad(g, fdGrad(lossFn, w), 'l2 g');
      // Accumulation: loss += …, g += ….
      const base = lossFn();
      loss[0] = 2;
      K.l2_loss([w], [loss], { N, lambda });
      assertClose(loss, [2 + base], 'l2_loss accumulates');
      const g2 = Float64Array.from(g, () => 1);
      K.l2_backward([w], [g2], { N, lambda });
      assertClose(g2, g.map((v) => 1 + v), 'l2_backward in place');
    });
  }
});

describe('convolution, pooling, LRN and dropout gradients vs finite differences', () => {
  const outDim = (n: number, k: number, s: number, same: number): number =>
    same ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1;

  // B, H, W, C, K, KH, KW, SH, SW, padding
  const convShapes: Array<[number, number, number, number, number, number, number, number, number, number]> = [
    [2, 5, 4, 2, 3, 3, 3, 1, 1, 1],
    [1, 7, 5, 3, 2, 3, 2, 2, 2, 1],
    [2, 7, 5, 3, 2, 3, 3, 2, 1, 0],
    [1, 4, 3, 2, 3, 1, 1, 1, 1, 0],
    [1, 3, 3, 1, 2, 5, 5, 2, 2, 1],
  ];
  for (const [B, H, W, C, K, KH, KW, SH, SW, padding] of convShapes) {
    const OH = outDim(H, KH, SH, padding), OW = outDim(W, KW, SW, padding);
    const attrs = { B, H, W, C, K, KH, KW, SH, SW, padding, OH, OW };
    it(`conv2d ${JSON.stringify(attrs)}: dw, db, dx`, () => {
      const rng = testRandom(B * 1000 + H * 100 + KH * 10 + SH + padding);
      const x = randn(rng, B * H * W * C), w = randn(rng, KH * KW * C * K), b = randn(rng, K);
      const r = randn(rng, B * OH * OW * K), y = new Float64Array(B * OH * OW * K);
      const objective = (): number => {
        K_.conv2d_forward([x, w, b], [y], attrs);
        return dot(r, y);
      };
      const dw = new Float64Array(w.length), db = new Float64Array(K), dx = new Float64Array(x.length);
      K_.conv2d_backward([x, w, r], [dw, db, dx], attrs);
      assertGrad(dw, fdGrad(objective, w), 'dw');
      assertGrad(db, fdGrad(objective, b), 'db');
      assertGrad(dx, fdGrad(objective, x), 'dx');
    });
  }

  it('conv2d_backward accumulate=1 adds to dw and db, overwrites dx; dx is optional', () => {
    const attrs = { B: 2, H: 5, W: 4, C: 2, K: 3, KH: 3, KW: 3, SH: 2, SW: 1, padding: 1, OH: 3, OW: 4 };
    const rng = testRandom(77);
    const x = randn(rng, 80), w = randn(rng, 54), dy = randn(rng, 72);
    const dw0 = new Float64Array(54), db0 = new Float64Array(3), dx0 = new Float64Array(80);
    K_.conv2d_backward([x, w, dy], [dw0, db0, dx0], attrs);
    const dw = randn(rng, 54), db = randn(rng, 3), dx = randn(rng, 80);
    const dwStart = dw.slice(), dbStart = db.slice();
    K_.conv2d_backward([x, w, dy], [dw, db, dx], { ...attrs, accumulate: 1 });
    assertClose(dw, dwStart.map((v, k) => v + dw0[k]), 'dw accumulated');
    assertClose(db, dbStart.map((v, k) => v + db0[k]), 'db accumulated');
    assertClose(dx, dx0, 'dx overwritten');
    const dw2 = new Float64Array(54), db2 = new Float64Array(3);
    K_.conv2d_backward([x, w, dy], [dw2, db2], attrs);
    assertClose(dw2, dw0, 'dw without dx');
  });

  it('conv2d SAME padding follows TF: OH = ceil(H/SH), pad_top = floor(pad_total/2), and OH is checked', () => {
    // H = 4, KH = 3, SH = 2: OH = 2, pad_total = max(1·2 + 3 − 4, 0) = 1, pad_top = 0 (the extra row is at the bottom)
    const x = Float64Array.from([1, 2, 3, 4]); // B=1, H=4, W=1, C=1
    const w = Float64Array.from([1, 10, 100]); // KH=3, KW=1, C=1, K=1
    const y = new Float64Array(2);
    const attrs = { B: 1, H: 4, W: 1, C: 1, K: 1, KH: 3, KW: 1, SH: 2, SW: 1, padding: 1, OH: 2, OW: 1 };
    K_.conv2d_forward([x, w, new Float64Array(1)], [y], attrs);
    // rows 0..2 → 1 + 20 + 300; rows 2..4 (row 4 is padding) → 3 + 40
    assertClose(y, [321, 43], 'SAME output');
    assert.throws(() => K_.conv2d_forward([x, w, new Float64Array(1)], [y], { ...attrs, OH: 3 }),
      /conv2d_forward \(ref\): OH=3 does not match padding SAME/);
    assert.throws(() => K_.conv2d_forward([x, w, new Float64Array(1)], [y], { ...attrs, padding: 0, H: 2, OH: 1 }),
      /VALID padding needs H >= KH/);
  });

  // B, H, W, C, KH, KW, SH, SW, padding
  const poolShapes: Array<[number, number, number, number, number, number, number, number, number]> = [
    [1, 7, 5, 3, 3, 3, 2, 2, 1],
    [2, 7, 5, 2, 3, 3, 2, 2, 0],
    [1, 6, 6, 2, 2, 2, 2, 2, 1],
    [2, 5, 4, 3, 3, 2, 1, 1, 1],
  ];
  for (const [B, H, W, C, KH, KW, SH, SW, padding] of poolShapes) {
    const OH = outDim(H, KH, SH, padding), OW = outDim(W, KW, SW, padding);
    const attrs = { B, H, W, C, KH, KW, SH, SW, padding, OH, OW };
    it(`maxpool ${JSON.stringify(attrs)}: dx`, () => {
      const rng = testRandom(B * 500 + H * 50 + KH * 5 + padding);
      const n = B * H * W * C, m = B * OH * OW * C;
      // Distinct values at least 1e-3 apart: no ties, and a finite-difference step never changes the argmax.
      const x = Float64Array.from({ length: n }, (_, k) => (k - n / 2) * 0.01);
      for (let k = n - 1; k > 0; k--) {
        const j = Math.floor(rng() * (k + 1));
        [x[k], x[j]] = [x[j], x[k]];
      }
      const r = randn(rng, m), y = new Float64Array(m), am = new Int32Array(m);
      const objective = (): number => {
        K_.maxpool_forward([x], [y, am], attrs);
        return dot(r, y);
      };
      objective();
      const dx = Float64Array.from({ length: n }, () => 5); // must be overwritten
      K_.maxpool_backward([r, am], [dx], attrs);
      assertGrad(dx, fdGrad(objective, x), 'maxpool dx');
    });
  }

  it('maxpool: first max on ties, padding never wins, argmax outside its window is an error', () => {
    // B=1, H=2, W=3, C=1; 2x2 windows, stride 2, SAME: OH=1, OW=2; the second window is [x2, pad, x5, pad]
    const x = Float64Array.from([-3, 7, -1, 7, 2, -2]);
    const y = new Float64Array(2), am = new Int32Array(2);
    const attrs = { B: 1, H: 2, W: 3, C: 1, KH: 2, KW: 2, SH: 2, SW: 2, padding: 1, OH: 1, OW: 2 };
    K_.maxpool_forward([x], [y, am], attrs);
    assert.deepEqual([...y], [7, -1]); // all-negative window: the padding (0) is not a candidate
    assert.deepEqual([...am], [1, 2]); // tie between x1 and x3: the first
    const dx = new Float64Array(6);
    K_.maxpool_backward([Float64Array.from([1, 2]), am], [dx], attrs);
    assert.deepEqual([...dx], [0, 1, 2, 0, 0, 0]);
    assert.throws(() => K_.maxpool_backward([Float64Array.from([1, 2]), Int32Array.from([1, 0])], [dx], attrs),
      /maxpool_backward \(ref\): argmax 0 at o 1 is not a cell of that output's window/);
  });

  const lrnParams = [
    { depthRadius: 4, bias: 1, alpha: 0.001 / 9, beta: 0.75 },
    { depthRadius: 2, bias: 2, alpha: 0.5, beta: 0.6 },
    { depthRadius: 1, bias: 1, alpha: 1, beta: 1 },
    { depthRadius: 0, bias: 0.5, alpha: 2, beta: 0.5 },
    { depthRadius: 7, bias: 1, alpha: 0.3, beta: 0.75 },
  ];
  for (const p of lrnParams) {
    for (const [N, C] of [[1, 1], [3, 5], [2, 10]] as Array<[number, number]>) {
      it(`lrn N=${N} C=${C} ${JSON.stringify(p)}: dx`, () => {
        const rng = testRandom(N * 31 + C + p.depthRadius * 7);
        const attrs = { N, C, ...p };
        const x = randn(rng, N * C).map((v) => 2 * v), r = randn(rng, N * C);
        const y = new Float64Array(N * C), scale = new Float64Array(N * C);
        const objective = (): number => {
          K_.lrn_forward([x], [y, scale], attrs);
          return dot(r, y);
        };
        objective();
        const dx = new Float64Array(N * C);
        K_.lrn_backward([x, y, r, scale], [dx], attrs);
        assertGrad(dx, fdGrad(objective, x), 'lrn dx');
      });
    }
  }

  it('lrn matches tf.nn.lrn on a hand-computed row', () => {
    const x = Float64Array.from([1, 2, 3]);
    const y = new Float64Array(3), scale = new Float64Array(3);
    K_.lrn_forward([x], [y, scale], { N: 1, C: 3, depthRadius: 1, bias: 1, alpha: 0.5, beta: 0.5 });
    assertClose(scale, [1 + 0.5 * 5, 1 + 0.5 * 14, 1 + 0.5 * 13], 'scale');
    assertClose(y, [1 / Math.sqrt(3.5), 2 / Math.sqrt(8), 3 / Math.sqrt(7.5)], 'y');
  });

  for (const N of [1, 9, 200]) {
    it(`dropout N=${N}: dx given the mask`, () => {
      const rng = testRandom(N + 3);
      const attrs = { N, keepProb: 0.6, seed: 11 };
      const hyper = Float64Array.from([0, 4, 1]); // the step is hyper[1]
      const x = randn(rng, N), r = randn(rng, N), y = new Float64Array(N), mask = new Float64Array(N);
      const objective = (): number => {
        K_.dropout_forward([x, hyper], [y, mask], attrs);
        return dot(r, y);
      };
      objective();
      if (N > 1) assert.ok(mask.some((v) => v === 0) && mask.some((v) => v !== 0), 'mask keeps some and drops some');
      const dx = new Float64Array(N);
      K_.dropout_backward([r, mask], [dx], { N });
      const fd = fdGrad(objective, x);
      if (mask.every((v) => v === 0)) assert.ok(dx.every((v) => v === 0) && fd.every((v) => v === 0));
      else assertGrad(dx, fd, 'dropout dx');
    });
  }

  it('dropout: keep fraction near keepProb, mask values 0 or 1/keepProb, a function of (seed, step, i)', () => {
    const N = 50_000;
    for (const keepProb of [0.1, 0.5, 0.9, 1]) {
      const y = new Float64Array(N), mask = new Float64Array(N);
      K_.dropout_forward([new Float64Array(N).fill(1), Float64Array.from([0, 9, 1])], [y, mask], { N, keepProb, seed: 5 });
      const kept = mask.filter((v) => v !== 0).length / N;
      assert.ok(Math.abs(kept - keepProb) < 0.012, `kept ${kept} for keepProb ${keepProb}`);
      assert.ok(mask.every((v) => v === 0 || v === 1 / keepProb));
      // the first elements of a longer buffer get the same mask
      const y2 = new Float64Array(10), m2 = new Float64Array(10);
      K_.dropout_forward([new Float64Array(10).fill(1), Float64Array.from([0, 9, 1])], [y2, m2], { N: 10, keepProb, seed: 5 });
      assert.deepEqual([...m2], [...mask.subarray(0, 10)]);
    }
    assert.throws(() => K_.dropout_forward([new Float64Array(1), Float64Array.from([0, 1, 1])], [new Float64Array(1), new Float64Array(1)],
      { N: 1, keepProb: 0, seed: 1 }), /dropout_forward \(ref\): attribute keepProb must be in \(0, 1\]/);
    assert.throws(() => K_.dropout_forward([new Float64Array(1), Float64Array.from([0, 1.5, 1])], [new Float64Array(1), new Float64Array(1)],
      { N: 1, keepProb: 0.5, seed: 1 }), /hyper\[1\] \(the step\) must be a non-negative integer, got 1\.5/);
  });
});

describe('composed network on ReferenceBackend', () => {
  it('dense→relu→dense→softmax_xent (+ l2 on W1): every parameter vs finite differences', async () => {
    const B = 3, I = 7, Hd = 5, C = 4, lambda = 0.01;
    const rng = testRandom(2024);
    const be = new ReferenceBackend();
    const f32 = (data: Float64Array): number => {
      const h = be.alloc(data.length);
      be.copyIn(h, data);
      return h;
    };
    const x = f32(randn(rng, B * I));
    const labels = be.alloc(B, 'i32');
    be.copyIn(labels, randLabels(rng, B, C));
    const hy = f32(hyper(0.1, 1, 1 / B));
    const W1 = f32(randn(rng, I * Hd)), b1 = f32(randn(rng, Hd));
    const W2 = f32(randn(rng, Hd * C)), b2 = f32(randn(rng, C));
    const h = be.alloc(B * Hd), a = be.alloc(B * Hd), logits = be.alloc(B * C);
    const loss = be.alloc(1), probs = be.alloc(B * C);
    const dlogits = be.alloc(B * C), da = be.alloc(B * Hd);
    const dW1 = be.alloc(I * Hd), db1 = be.alloc(Hd), dW2 = be.alloc(Hd * C), db2 = be.alloc(C);

    const forward = be.compile([
      { kernel: 'dense_forward', inputs: [x, W1, b1], outputs: [h], attrs: { B, I, O: Hd } },
      { kernel: 'relu_forward', inputs: [h], outputs: [a], attrs: { N: B * Hd } },
      { kernel: 'dense_forward', inputs: [a, W2, b2], outputs: [logits], attrs: { B, I: Hd, O: C } },
      { kernel: 'softmax_xent_forward', inputs: [logits, labels, hy], outputs: [loss, probs], attrs: { B, C } },
      { kernel: 'l2_loss', inputs: [W1], outputs: [loss], attrs: { N: I * Hd, lambda } },
    ]);
    const backward = be.compile([
      { kernel: 'softmax_xent_backward', inputs: [probs, labels, hy], outputs: [dlogits], attrs: { B, C } },
      { kernel: 'dense_backward', inputs: [a, W2, dlogits], outputs: [dW2, db2, da], attrs: { B, I: Hd, O: C } },
      { kernel: 'relu_backward', inputs: [a, da], outputs: [da], attrs: { N: B * Hd } },
      { kernel: 'dense_backward', inputs: [x, W1, da], outputs: [dW1, db1], attrs: { B, I, O: Hd } },
      { kernel: 'l2_backward', inputs: [W1], outputs: [dW1], attrs: { N: I * Hd, lambda } },
    ]);
    await be.run(forward);
    await be.run(backward);
    await be.sync();

    // FD is only valid if no pre-activation sits within a step of relu's kink.
    const hv = be.copyOut(h);
    assert.ok(hv.every((v) => Math.abs(v) > 1e-3), 'pre-activations away from 0');
    assert.ok(hv.some((v) => v > 0) && hv.some((v) => v < 0), 'relu both active and inactive');

    const lossFn = (): number => {
      be.runSync(forward);
      return be.view(loss)[0];
    };
    const params: Array<[string, number, number]> = [['W1', W1, dW1], ['b1', b1, db1], ['W2', W2, dW2], ['b2', b2, db2]];
    for (const [name, p, g] of params) {
      const live = be.view(p);
      assert.ok(live instanceof Float64Array);
      const fd = fdGrad(lossFn, live);
      assertGrad(Float64Array.from(be.copyOut(g)), fd, `network d${name}`);
    }
    be.releaseProgram(forward);
    be.releaseProgram(backward);
    await be.close();
  });

  it('compile validates kernel names, handles, arity and dtypes; run rejects freed handles', async () => {
    const be = new ReferenceBackend();
    const x = be.alloc(4), y = be.alloc(4), idx = be.alloc(4, 'i32');
    assert.throws(() => be.compile([{ kernel: 'nope', inputs: [], outputs: [] }]), /unknown kernel 'nope'/);
    assert.throws(() => be.compile([{ kernel: 'copy', inputs: [x], outputs: [999], attrs: { N: 4 } }]), /y is not a live handle/);
    assert.throws(() => be.compile([{ kernel: 'copy', inputs: [idx], outputs: [y], attrs: { N: 4 } }]), /x \(handle \d+\) must be f32, got i32/);
    assert.throws(() => be.compile([{ kernel: 'copy', inputs: [x, x], outputs: [y], attrs: { N: 4 } }]), /takes 1 inputs, got 2/);
    const p = be.compile([{ kernel: 'copy', inputs: [x], outputs: [y], attrs: { N: 4 } }]);
    be.copyIn(x, [1, 2, 3, 4]);
    await be.run(p);
    assert.deepEqual([...be.copyOut(y)], [1, 2, 3, 4]);
    be.copyIn(x, [9, 8], 2);
    await be.runOps([{ kernel: 'copy', inputs: [x], outputs: [y], attrs: { N: 4 } }]);
    assert.deepEqual([...be.copyOut(y)], [1, 2, 9, 8]);
    assert.throws(() => be.copyIn(x, [1, 2, 3], 2), /do not fit/);
    be.free(x);
    await assert.rejects(be.run(p), /handle \d+ was freed/);
    await assert.rejects(be.runOps([{ kernel: 'copy', inputs: [y], outputs: [y] }]), /missing attribute N/);
    await be.close();
  });
});

describe('optimizers vs hand-computed steps', () => {
  it('sgd: w -= lr·g, lr read from hyper each step', () => {
    const w = Float64Array.from([1, -2]), g = Float64Array.from([0.5, 0.25]);
    K.sgd_update([g, hyper(0.1, 1, 1)], [w], { N: 2 });
    assertClose(w, [0.95, -2.025], 'step 1');
    K.sgd_update([g, hyper(0.2, 2, 1)], [w], { N: 2 });
    assertClose(w, [0.85, -2.075], 'step 2');
  });

  it('momentum: v = μv + g; w -= lr·v', () => {
    const w = Float64Array.from([1]), v = new Float64Array(1), g = Float64Array.from([1]);
    const expected: Array<[number, number]> = [[1, 0.9], [1.9, 0.71], [2.71, 0.439]];
    for (const [ev, ew] of expected) {
      K.momentum_update([g, hyper(0.1, 1, 1)], [w, v], { N: 1, momentum: 0.9, nesterov: 0 });
      assertClose(v, [ev], 'v');
      assertClose(w, [ew], 'w');
    }
  });

  it('momentum nesterov: w -= lr·(g + μ·v_new)', () => {
    const w = Float64Array.from([1]), v = new Float64Array(1), g = Float64Array.from([1]);
    // 1 − 0.1·1.9 = 0.81; − 0.1·(1 + 1.71) = 0.539; − 0.1·(1 + 2.439) = 0.1951
    const expected: Array<[number, number]> = [[1, 0.81], [1.9, 0.539], [2.71, 0.1951]];
    for (const [ev, ew] of expected) {
      K.momentum_update([g, hyper(0.1, 1, 1)], [w, v], { N: 1, momentum: 0.9, nesterov: 1 });
      assertClose(v, [ev], 'v');
      assertClose(w, [ew], 'w');
    }
  });

  it('adam with bias correction (values computed independently in Python)', () => {
    const attrs = { N: 1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
    const w = Float64Array.from([1]), m = new Float64Array(1), v = new Float64Array(1);
    const steps: Array<[number, number, number, number]> = [
      // g, m, v, w after step t = 1, 2, 3
      [2, 0.2, 0.004, 0.9990000001581139],
      [-1, 0.08, 0.004996, 0.9987336631561343],
      [0.5, 0.122, 0.005241004, 0.9983932340549491],
    ];
    steps.forEach(([g, em, ev, ew], k) => {
      K.adam_update([Float64Array.from([g]), hyper(0.001, k + 1, 1)], [w, m, v], attrs);
      assertClose(m, [em], `m t=${k + 1}`, 1e-12);
      assertClose(v, [ev], `v t=${k + 1}`, 1e-12);
      assertClose(w, [ew], `w t=${k + 1}`, 1e-14);
    });
    assert.throws(() => K.adam_update([Float64Array.from([1]), hyper(0.001, 0, 1)], [w, m, v], attrs), /adam_update.*hyper\[1\]/);
  });

  it('ema: shadow = d·shadow + (1−d)·w', () => {
    const shadow = Float64Array.from([0, 10]), w = Float64Array.from([1, 0]);
    const expected = [[0.1, 9], [0.19, 8.1], [0.271, 7.29]];
    for (const e of expected) {
      K.ema_update([w], [shadow], { N: 2, decay: 0.9 });
      assertClose(shadow, e, 'shadow');
    }
  });

  it('sum_squares accumulates; clip_by_norm above, below and at zero norm', () => {
    const g = Float64Array.from([3, 4]);
    const s = Float64Array.from([1]);
    K.sum_squares([g], [s], { N: 2 });
    assertClose(s, [26], 'accumulated onto 1');
    s[0] = 0;
    K.sum_squares([g], [s], { N: 2 });
    assertClose(s, [25], 'from 0');
    K.clip_by_norm([s], [g], { N: 2, clipNorm: 10 });
    assertClose(g, [3, 4], 'norm 5 below 10: unchanged');
    K.clip_by_norm([s], [g], { N: 2, clipNorm: 1 });
    assertClose(g, [0.6, 0.8], 'norm 5 above 1: scaled to norm 1');
    K.clip_by_norm([Float64Array.from([0])], [g], { N: 2, clipNorm: 1 });
    assertClose(g, [0.6, 0.8], 's = 0: unchanged');
  });

  it('fill, scale, axpy, copy', () => {
    const x = new Float64Array(3), y = Float64Array.from([1, 2, 3]);
    K.fill([], [x], { N: 3, value: 2.5 });
    assertClose(x, [2.5, 2.5, 2.5], 'fill');
    K.scale([], [x], { N: 2, factor: -2 });
    assertClose(x, [-5, -5, 2.5], 'scale only N');
    K.axpy([x], [y], { N: 3, alpha: 0.5 });
    assertClose(y, [-1.5, -0.5, 4.25], 'axpy');
    K.copy([y], [x], { N: 3 });
    assert.deepEqual([...x], [-1.5, -0.5, 4.25]);
  });
});

describe('gathers, accuracy and errors', () => {
  const src = Uint8Array.from([0, 1, 2, 10, 11, 12, 20, 21, 22, 255, 254, 253]); // R=4, D=3

  it('gather_rows_u8 / gather_rows_f32 / gather_labels_u8', () => {
    const idx = Int32Array.from([2, 0, 3, 2]);
    const y = new Float64Array(12);
    K.gather_rows_u8([src, idx], [y], { B: 4, D: 3, R: 4, scale: 0.5 });
    assertClose(y, [10, 10.5, 11, 0, 0.5, 1, 127.5, 127, 126.5, 10, 10.5, 11], 'u8 rows');
    const srcF = Float64Array.from(src, (v) => v - 0.25);
    const yf = new Float64Array(12);
    K.gather_rows_f32([srcF, idx], [yf], { B: 4, D: 3, R: 4 });
    assertClose(yf, [19.75, 20.75, 21.75, -0.25, 0.75, 1.75, 254.75, 253.75, 252.75, 19.75, 20.75, 21.75], 'f32 rows');
    const yl = new Int32Array(4);
    K.gather_labels_u8([Uint8Array.from([7, 3, 9, 1]), idx], [yl], { B: 4, R: 4 });
    assert.deepEqual([...yl], [9, 7, 1, 9]);
  });

  it('accuracy_count: argmax with first max on ties', () => {
    const logits = Float64Array.from([1, 3, 3, /**/ 5, 0, 5, /**/ 0, 0, 1, /**/ 2, 1, 0]);
    const labels = Int32Array.from([1, 0, 2, 1]);
    const count = new Float64Array(1);
    K.accuracy_count([logits, labels], [count], { B: 4, C: 3 });
    assert.equal(count[0], 3); // row 0: tie → 1 ✓, row 1: tie → 0 ✓, row 2 ✓, row 3 ✗ (argmax 0)
  });

  /** Runs fn, expects it to throw matching re, and checks that outs were left untouched. */
  function throwsUnchanged(fn: () => void, re: RegExp, outs: RefTensor[]): void {
    for (const o of outs) o.fill(7);
    assert.throws(fn, re);
    for (const o of outs) assert.ok(o.every((v) => v === 7), 'outputs unchanged');
  }

  it('out-of-range index or label throws naming position and value, writes nothing', () => {
    const y = new Float64Array(6), yl = new Int32Array(2);
    throwsUnchanged(() => K.gather_rows_u8([src, Int32Array.from([1, 4])], [y], { B: 2, D: 3, R: 4, scale: 1 }),
      /gather_rows_u8.*index 4 at b 1 is outside \[0, 4\)/, [y]);
    throwsUnchanged(() => K.gather_rows_f32([new Float64Array(12), Int32Array.from([-1, 0])], [y], { B: 2, D: 3, R: 4 }),
      /gather_rows_f32.*index -1 at b 0/, [y]);
    throwsUnchanged(() => K.gather_labels_u8([src, Int32Array.from([0, 12])], [yl], { B: 2, R: 12 }),
      /gather_labels_u8.*index 12 at b 1/, [yl]);
    const loss = new Float64Array(1), probs = new Float64Array(6), dl = new Float64Array(6), count = new Float64Array(1);
    const bad = Int32Array.from([0, 3]);
    throwsUnchanged(() => K.softmax_xent_forward([new Float64Array(6), bad, hyper(0, 1, 1)], [loss, probs], { B: 2, C: 3 }),
      /softmax_xent_forward.*label 3 at row 1 is outside \[0, 3\)/, [loss, probs]);
    throwsUnchanged(() => K.softmax_xent_backward([new Float64Array(6), Int32Array.from([-2, 0]), hyper(0, 1, 1)], [dl], { B: 2, C: 3 }),
      /softmax_xent_backward.*label -2 at row 0/, [dl]);
    throwsUnchanged(() => K.accuracy_count([new Float64Array(6), bad], [count], { B: 2, C: 3 }),
      /accuracy_count.*label 3 at row 1/, [count]);
  });

  it('too-small buffers and wrong dtypes throw naming op, argument and sizes, writing nothing', () => {
    const y = new Float64Array(6);
    throwsUnchanged(() => K.dense_forward([new Float64Array(5), new Float64Array(4), new Float64Array(2)], [y], { B: 3, I: 2, O: 2 }),
      /dense_forward \(ref\): x has 5 elements, needs 6 \(B=3, I=2\)/, [y]);
    assert.throws(() => K.dense_forward([new Float64Array(6), new Float64Array(3), new Float64Array(2)], [new Float64Array(6)], { B: 3, I: 2, O: 2 }),
      /dense_forward \(ref\): W has 3 elements, needs 4 \(I=2, O=2\)/);
    const dW = new Float64Array(4), db = new Float64Array(2), dx = new Float64Array(5);
    throwsUnchanged(() => K.dense_backward([new Float64Array(6), new Float64Array(4), new Float64Array(6)], [dW, db, dx], { B: 3, I: 2, O: 2 }),
      /dense_backward \(ref\): dx has 5 elements, needs 6 \(B=3, I=2\)/, [dW, db, dx]);
    const yg = new Float64Array(5);
    throwsUnchanged(() => K.gather_rows_u8([src, Int32Array.from([0, 1])], [yg], { B: 2, D: 3, R: 4, scale: 1 }),
      /gather_rows_u8 \(ref\): y has 5 elements, needs 6/, [yg]);
    throwsUnchanged(() => K.gather_rows_u8([src, Int32Array.from([0, 1])], [y], { B: 2, D: 3, R: 5, scale: 1 }),
      /gather_rows_u8 \(ref\): src has 12 elements, needs 15 \(R=5, D=3\)/, [y]);
    const w = new Float64Array(3);
    throwsUnchanged(() => K.sgd_update([new Float64Array(3), new Float64Array(0)], [w], { N: 3 }),
      /sgd_update \(ref\): hyper has 0 elements, needs 1/, [w]);
    throwsUnchanged(() => K.relu_forward([new Int32Array(3)], [w], { N: 3 }), /relu_forward \(ref\): x must be f32, got i32/, [w]);
    throwsUnchanged(() => K.relu_forward([new Float64Array(3)], [w], { N: 2.5 }), /relu_forward \(ref\): attribute N/, [w]);
    throwsUnchanged(() => K.momentum_update([new Float64Array(3), hyper(1, 1, 1)], [w], { N: 3, momentum: 0.9 }),
      /momentum_update \(ref\): takes 2 outputs, got 1/, [w]);
  });
});
