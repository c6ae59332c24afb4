// Every native kernel on the test device against the float64 reference: rel err < 1e-5 on random non-zero inputs.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { referenceKernels, referenceSignatures } from '../src/reference/kernels.js';
import { relErr, testRandom } from '../src/reference/relerr.js';
import { openTestDevice } from './support/device.js';
import { TAIL_SIZES } from './support/tail-sizes.js';

const dev = openTestDevice();
after(() => dev.close());

type Gen = (rand: () => number, n: number) => number[];
const normal: Gen = (r, n) => Array.from({ length: n }, () => (r() * 2 - 1) * 2 + (r() < 0.5 ? -0.05 : 0.05));
const positive: Gen = (r, n) => Array.from({ length: n }, () => 0.1 + r());
const awayFromZero: Gen = (r, n) => Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.05 + r()));
const probsLike: Gen = (r, n) => Array.from({ length: n }, () => 0.01 + r() * 0.98);

interface Case {
  kernel: string;
  attrs: Record<string, number>;
  // One size (numel) and generator per input and output, in signature order.
  inputs: Array<{ n: number; gen?: Gen; ints?: number }>;
  outputs: Array<{ n: number; gen?: Gen }>;
  // Outputs compared bit for bit against the reference rounded to f32 (selections, masks, indices).
  exact?: number[];
}

const hyper = { n: 8, gen: ((r: () => number) => [0.05 + r() * 0.1, 3, 1 / 7, 0, 0, 0, 0, 0]) as Gen };

function denseCases(): Case[] {
  const out: Case[] = [];
  for (const [B, I, O] of [[1, 1, 1], [3, 7, 5], [17, 33, 9], [3, 5, 17], [2, 4, 65], [128, 784, 50], [64, 1000, 100]] as const) {
    out.push({ kernel: 'dense_forward', attrs: { B, I, O }, inputs: [{ n: B * I }, { n: I * O }, { n: O }], outputs: [{ n: B * O }] });
    out.push({ kernel: 'dense_backward', attrs: { B, I, O, accumulate: 0 }, inputs: [{ n: B * I }, { n: I * O }, { n: B * O }], outputs: [{ n: I * O }, { n: O }, { n: B * I }] });
    out.push({ kernel: 'dense_backward', attrs: { B, I, O, accumulate: 1 }, inputs: [{ n: B * I }, { n: I * O }, { n: B * O }], outputs: [{ n: I * O }, { n: O }] });
    // noWeightGrad: dW keeps what it held (another kernel forms it: Note [Shared gradients])
    out.push({ kernel: 'dense_backward', attrs: { B, I, O, accumulate: 0, noWeightGrad: 1 }, inputs: [{ n: B * I }, { n: I * O }, { n: B * O }], outputs: [{ n: I * O }, { n: O }, { n: B * I }] });
  }
  // dense_grad_norm: two towers' weight gradient from their factors at a piece (partial rows at both ends; the
  // largest spans two of the CPU kernel's chunks), tower 1 with fewer rows, with and without the L2 term
  const rows = (v: number) => ({ n: 1, gen: (() => [v]) as Gen });
  for (const [B, I, O, at, cut] of [[1, 1, 1, 0, 0], [17, 33, 9, 5, 9], [3, 5, 17, 0, 0], [40, 600, 500, 37, 1000]] as const)
    for (const lambda of [0, 0.004]) {
      const N = I * O - at - cut;
      out.push({ kernel: 'dense_grad_norm', attrs: { N, B, I, O, at, lambda }, inputs: [{ n: N }, { n: B * I }, { n: B * O }, rows(B), { n: B * I }, { n: B * O }, rows(Math.max(0, B - 2))], outputs: [{ n: N }, { n: 1 }, { n: 1 }] });
    }
  return out;
}

/** The fused tail (Note [Fused parameter tail]): clipping that acts, that does not, or none; with and without EMA. */
function fusedCases(N: number): Case[] {
  const out: Case[] = [];
  const norm = (v: number) => ({ n: 1, gen: (() => [v]) as Gen });
  const updates: Array<[string, Record<string, number>, number, Gen | undefined]> = [
    ['fused_sgd_update', {}, 0, undefined],
    ['fused_momentum_update', { momentum: 0.9, nesterov: 0 }, 1, undefined],
    ['fused_momentum_update', { momentum: 0.9, nesterov: 1 }, 1, undefined],
    ['fused_adam_update', { beta1: 0.5, beta2: 0.9, epsilon: 1e-8 }, 2, positive],
  ];
  for (const [kernel, attrs, slots, last] of updates) {
    for (const [clipNorm, s] of [[0, 9], [5, 50 + N], [5, 0.5]] as const) {
      for (const ema of [false, true]) {
        const state = Array.from({ length: slots }, (_, k) => ({ n: N, ...(k === slots - 1 && last ? { gen: last } : {}) }));
        out.push({
          kernel,
          attrs: { N, ...attrs, clipNorm, decay: ema ? 0.99 : 0 },
          inputs: [norm(s), hyper],
          outputs: [{ n: N }, { n: N }, ...state, ...(ema ? [{ n: N }] : [])],
        });
      }
    }
  }
  out.push({ kernel: 'l2_grad_norm', attrs: { N, lambda: 0.004 }, inputs: [{ n: N }], outputs: [{ n: N }, { n: 1 }, { n: 1 }] });
  for (const lambda of [0, 0.004]) // the sharded update's fused two-tower reduce (Note [Shared gradients])
    out.push({ kernel: 'add_grad_norm', attrs: { N, lambda }, inputs: [{ n: N }, { n: N }, { n: N }], outputs: [{ n: N }, { n: 1 }, { n: 1 }] });
  // matmul: the step's GEMM shapes in small, every transpose combination
  for (const [M, N, K] of [[1, 1, 1], [5, 3, 7], [17, 9, 33], [64, 50, 20]] as const) {
    for (const [transA, transB] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const) {
      out.push({ kernel: 'matmul', attrs: { M, N, K, transA, transB }, inputs: [{ n: M * K }, { n: K * N }], outputs: [{ n: M * N }] });
    }
  }
  return out;
}

function elementwise(): Case[] {
  const out: Case[] = [];
  for (const N of TAIL_SIZES) {
    out.push(...fusedCases(N));
    out.push({ kernel: 'relu_forward', attrs: { N }, inputs: [{ n: N, gen: awayFromZero }], outputs: [{ n: N }] });
    out.push({ kernel: 'relu_backward', attrs: { N }, inputs: [{ n: N, gen: awayFromZero }, { n: N }], outputs: [{ n: N }] });
    for (const a of ['sigmoid', 'tanh']) {
      out.push({ kernel: `${a}_forward`, attrs: { N }, inputs: [{ n: N }], outputs: [{ n: N }] });
      out.push({ kernel: `${a}_backward`, attrs: { N }, inputs: [{ n: N, gen: probsLike }, { n: N }], outputs: [{ n: N }] });
    }
    // sigmoid's exp (Note [Vector exp]) over its whole range, and on negative inputs only, where the output is e^x
    // nearly: each of its range reduction steps (k from 0 down to the clamp at -87) is checked there
    out.push({ kernel: 'sigmoid_forward', attrs: { N }, inputs: [{ n: N, gen: (r, n) => Array.from({ length: n }, () => (r() - 0.5) * 200) }], outputs: [{ n: N }] });
    out.push({ kernel: 'sigmoid_forward', attrs: { N }, inputs: [{ n: N, gen: (r, n) => Array.from({ length: n }, () => -2 - 18 * r()) }], outputs: [{ n: N }] });
    out.push({ kernel: 'l2_loss', attrs: { N, lambda: 0.004 }, inputs: [{ n: N }], outputs: [{ n: 1 }] });
    out.push({ kernel: 'l2_backward', attrs: { N, lambda: 0.004 }, inputs: [{ n: N }], outputs: [{ n: N }] });
    out.push({ kernel: 'sum_squares', attrs: { N }, inputs: [{ n: N }], outputs: [{ n: 1 }] });
    out.push({ kernel: 'clip_by_norm', attrs: { N, clipNorm: 5 }, inputs: [{ n: 1, gen: (r) => [50 + r() * 100] }], outputs: [{ n: N }] });
    out.push({ kernel: 'fill', attrs: { N, value: 0.37 }, inputs: [], outputs: [{ n: N }] });
    out.push({ kernel: 'scale', attrs: { N, factor: -1.7 }, inputs: [], outputs: [{ n: N }] });
    out.push({ kernel: 'axpy', attrs: { N, alpha: 0.3 }, inputs: [{ n: N }], outputs: [{ n: N }] });
    out.push({ kernel: 'copy', attrs: { N }, inputs: [{ n: N }], outputs: [{ n: N }] });
    out.push({ kernel: 'sgd_update', attrs: { N }, inputs: [{ n: N }, hyper], outputs: [{ n: N }] });
    out.push({ kernel: 'momentum_update', attrs: { N, momentum: 0.9, nesterov: 0 }, inputs: [{ n: N }, hyper], outputs: [{ n: N }, { n: N }] });
    out.push({ kernel: 'momentum_update', attrs: { N, momentum: 0.9, nesterov: 1 }, inputs: [{ n: N }, hyper], outputs: [{ n: N }, { n: N }] });
    out.push({ kernel: 'adam_update', attrs: { N, beta1: 0.5, beta2: 0.9, epsilon: 1e-8 }, inputs: [{ n: N }, hyper], outputs: [{ n: N }, { n: N }, { n: N, gen: positive }] });
    out.push({ kernel: 'ema_update', attrs: { N, decay: 0.99 }, inputs: [{ n: N }], outputs: [{ n: N }] });
    out.push({ kernel: 'hash_bits', attrs: { N }, inputs: [{ n: N }], outputs: [{ n: 2 }] });
  }
  return out;
}

function lossCases(): Case[] {
  const out: Case[] = [];
  for (const [B, C] of [[1, 2], [5, 10], [128, 10], [33, 1000]] as const) {
    const labels = { n: B, ints: C };
    out.push({ kernel: 'softmax_xent_forward', attrs: { B, C }, inputs: [{ n: B * C, gen: (r, n) => normal(r, n).map((v) => v * 5) }, labels, hyper], outputs: [{ n: 1 }, { n: B * C }] });
    out.push({ kernel: 'softmax_xent_backward', attrs: { B, C }, inputs: [{ n: B * C, gen: probsLike }, labels, hyper], outputs: [{ n: B * C }] });
    out.push({ kernel: 'mean_forward', attrs: { B, C }, inputs: [{ n: B * C }, hyper], outputs: [{ n: 1 }] });
    out.push({ kernel: 'mean_backward', attrs: { B, C }, inputs: [hyper], outputs: [{ n: B * C }] });
    out.push({ kernel: 'accuracy_count', attrs: { B, C }, inputs: [{ n: B * C }, labels], outputs: [{ n: 1 }] });
  }
  for (const [R, B, D] of [[10, 3, 5], [20, 5, 17], [40, 9, 65], [300, 128, 784]] as const) {
    const idx = { n: B, ints: R };
    out.push({ kernel: 'gather_rows_u8', attrs: { B, D, R, scale: 1 / 255 }, inputs: [{ n: R * D, ints: 256 }, idx], outputs: [{ n: B * D }] });
    out.push({ kernel: 'gather_rows_f32', attrs: { B, D, R }, inputs: [{ n: R * D }, idx], outputs: [{ n: B * D }] });
    out.push({ kernel: 'gather_labels_u8', attrs: { B, R }, inputs: [{ n: R, ints: 10 }, idx], outputs: [{ n: B }] });
  }
  // R, B, H, W, C, OH, OW: crops from the corner to the far edge, flipped or not; one constant image (std floor)
  for (const [R, B, H, W, C, OH, OW] of [[4, 3, 5, 6, 2, 3, 4], [20, 16, 32, 32, 3, 24, 24], [3, 5, 4, 4, 1, 4, 4], [1, 1, 1, 1, 1, 1, 1]] as const) {
    const params: Gen = (r, n) => Array.from({ length: n }, (_, k) => Math.floor(r() * [H - OH + 1, W - OW + 1, 2][k % 3]!));
    const src: Gen = (r, n) => Array.from({ length: n }, (_, k) => (k < H * W * C ? 77 : Math.floor(r() * 256)));
    out.push({ kernel: 'crop_flip_standardize_u8', attrs: { B, R, H, W, C, OH, OW }, inputs: [{ n: R * H * W * C, gen: src }, { n: B, ints: R }, { n: 3 * B, gen: params }], outputs: [{ n: B * OH * OW * C }] });
  }
  return out;
}

/** Output size of one spatial dimension (docs/kernels.md): VALID ceil((in − k + 1)/s), SAME ceil(in/s). */
function outDim(n: number, k: number, s: number, same: number): number {
  return same ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1;
}

/** Inputs with distinct values (no ties in a pooling window): a shuffled grid, scaled into ±2. */
const distinct: Gen = (r, n) => {
  const v = Array.from({ length: n }, (_, k) => ((k + 0.5) / n) * 4 - 2);
  for (let k = n - 1; k > 0; k--) {
    const j = Math.floor(r() * (k + 1));
    [v[k], v[j]] = [v[j]!, v[k]!];
  }
  return v;
};

function convCases(): Case[] {
  const out: Case[] = [];
  // B, H, W, C, K, KH, KW, SH, SW, padding (0 VALID, 1 SAME)
  const shapes: Array<[number, number, number, number, number, number, number, number, number, number]> = [
    [1, 7, 5, 3, 4, 3, 3, 1, 1, 1],
    [3, 7, 5, 3, 4, 3, 3, 2, 2, 1],
    [3, 7, 5, 3, 4, 3, 3, 1, 1, 0],
    [1, 7, 5, 3, 4, 3, 3, 2, 2, 0],
    [3, 7, 5, 3, 4, 2, 3, 2, 1, 1],
    [3, 7, 5, 3, 4, 5, 5, 1, 1, 1], // filter wider than the input
    [1, 5, 5, 2, 3, 5, 5, 1, 1, 0], // filter = input: a 1x1 output
    [2, 6, 6, 2, 3, 1, 1, 1, 1, 0], // pointwise
    [2, 6, 6, 2, 3, 1, 1, 2, 2, 1],
    [2, 24, 24, 3, 64, 5, 5, 1, 1, 1], // CIFAR-10 conv1
    [2, 12, 12, 64, 64, 5, 5, 1, 1, 1], // CIFAR-10 conv2
  ];
  for (const [B, H, W, C, K, KH, KW, SH, SW, padding] of shapes) {
    const OH = outDim(H, KH, SH, padding), OW = outDim(W, KW, SW, padding);
    const attrs = { B, H, W, C, K, KH, KW, SH, SW, padding, OH, OW };
    const nx = B * H * W * C, nw = KH * KW * C * K, ny = B * OH * OW * K;
    out.push({ kernel: 'conv2d_forward', attrs, inputs: [{ n: nx }, { n: nw }, { n: K }], outputs: [{ n: ny }] });
    out.push({ kernel: 'conv2d_backward', attrs: { ...attrs, accumulate: 0 }, inputs: [{ n: nx }, { n: nw }, { n: ny }], outputs: [{ n: nw }, { n: K }, { n: nx }] });
    out.push({ kernel: 'conv2d_backward', attrs: { ...attrs, accumulate: 1 }, inputs: [{ n: nx }, { n: nw }, { n: ny }], outputs: [{ n: nw }, { n: K }] });
  }
  // B, H, W, C, KH, KW, SH, SW, padding
  const pools: Array<[number, number, number, number, number, number, number, number, number]> = [
    [1, 7, 5, 3, 3, 3, 2, 2, 1],
    [3, 7, 5, 3, 3, 3, 2, 2, 0],
    [3, 7, 5, 3, 2, 2, 1, 1, 0],
    [2, 7, 5, 4, 3, 2, 1, 2, 1],
    [1, 6, 6, 2, 2, 2, 2, 2, 1],
    [2, 24, 24, 64, 3, 3, 2, 2, 1], // CIFAR-10 pool1
    [2, 9, 8, 17, 3, 3, 2, 2, 1], // channels past a whole number of vectors
  ];
  for (const [B, H, W, C, KH, KW, SH, SW, padding] of pools) {
    const OH = outDim(H, KH, SH, padding), OW = outDim(W, KW, SW, padding);
    const attrs = { B, H, W, C, KH, KW, SH, SW, padding, OH, OW };
    const nx = B * H * W * C, ny = B * OH * OW * C;
    out.push({ kernel: 'maxpool_forward', attrs, inputs: [{ n: nx, gen: distinct }], outputs: [{ n: ny }, { n: ny }], exact: [0, 1] });
    // argmax as maxpool_forward writes it, from a random input without ties
    const argmax: Gen = (r, n) => {
      const y = new Float64Array(n), am = new Int32Array(n);
      referenceKernels.maxpool_forward!([Float64Array.from(Float32Array.from(distinct(r, nx)))], [y, am], attrs);
      return Array.from(am);
    };
    out.push({ kernel: 'maxpool_backward', attrs, inputs: [{ n: ny }, { n: ny, gen: argmax }], outputs: [{ n: nx }] });
  }
  const lrnParams = [
    { depthRadius: 4, bias: 1, alpha: 0.001 / 9, beta: 0.75 }, // CIFAR-10
    { depthRadius: 2, bias: 2, alpha: 0.3, beta: 0.6 },
    { depthRadius: 0, bias: 1, alpha: 0.5, beta: 1 },
    { depthRadius: 5, bias: 0.5, alpha: 0.2, beta: 0.5 },
  ];
  for (const [N, C] of [[1, 1], [7, 3], [35, 8], [9, 17], [3, 33], [300, 64]] as const) {
    for (const p of lrnParams) {
      const attrs = { N, C, ...p };
      const n = N * C;
      const scaleGen: Gen = (r, k) => Array.from({ length: k }, () => p.bias + r() * 2);
      out.push({ kernel: 'lrn_forward', attrs, inputs: [{ n }], outputs: [{ n }, { n }] });
      out.push({ kernel: 'lrn_backward', attrs, inputs: [{ n }, { n }, { n }, { n, gen: scaleGen }], outputs: [{ n }] });
    }
  }
  for (const N of [1, 7, 1000, 4099]) {
    for (const [keepProb, seed, step] of [[0.5, 1, 0], [0.9, 123456789, 77], [1, 3, 5], [0.25, 2 ** 40 + 3, 2 ** 24 - 1]] as const) {
      // the step is hyper[1] (an integer held exactly in f32)
      const stepHyper = { n: 8, gen: (() => [0.1, step, 1 / 7, 0, 0, 0, 0, 0]) as Gen };
      out.push({ kernel: 'dropout_forward', attrs: { N, keepProb, seed }, inputs: [{ n: N }, stepHyper], outputs: [{ n: N }, { n: N }], exact: [1] });
    }
    out.push({ kernel: 'dropout_backward', attrs: { N }, inputs: [{ n: N }, { n: N, gen: (r, k) => Array.from({ length: k }, () => (r() < 0.5 ? 0 : 2)) }], outputs: [{ n: N }] });
  }
  return out;
}

function runCase(c: Case, seed: number) {
  const r = testRandom(seed);
  const sig = referenceSignatures[c.kernel]!;
  assert.ok(sig, `reference has no kernel ${c.kernel}`);
  const make = (spec: { n: number; gen?: Gen; ints?: number }, dtype: string) =>
    spec.gen && spec.ints === undefined
      ? spec.gen(r, spec.n)
      : spec.ints !== undefined || dtype !== 'f32'
      ? Array.from({ length: spec.n }, () => Math.floor(r() * (spec.ints ?? 10)))
      : (spec.gen ?? normal)(r, spec.n);
  const inVals = c.inputs.map((s, i) => ({ vals: make(s, sig.inputs[i]![1]), dtype: sig.inputs[i]![1] }));
  const outVals = c.outputs.map((s, i) => ({ vals: make(s, sig.outputs[i]![1]), dtype: sig.outputs[i]![1] }));
  // Values round to f32 first so both sides start from identical inputs.
  const asRef = (v: { vals: number[]; dtype: string }) =>
    v.dtype === 'f32' ? Float64Array.from(Float32Array.from(v.vals)) : v.dtype === 'i32' ? Int32Array.from(v.vals) : Uint8Array.from(v.vals);
  const refIn = inVals.map(asRef);
  const refOut = outVals.map(asRef);
  referenceKernels[c.kernel]!(refIn, refOut, c.attrs);

  const handles = (vs: typeof inVals) =>
    vs.map((v) => {
      const h = dev.alloc(v.vals.length, v.dtype as 'f32');
      dev.copyIn(h, v.vals);
      return h;
    });
  const hin = handles(inVals);
  const hout = handles(outVals);
  return { refOut, hin, hout };
}

describe(`kernels on ${dev.name} vs float64 reference`, () => {
  const cases = [...denseCases(), ...elementwise(), ...lossCases(), ...convCases()];
  cases.forEach((c, i) => {
    it(`${c.kernel} ${JSON.stringify(c.attrs)}`, async () => {
      const { refOut, hin, hout } = runCase(c, 1000 + i);
      await dev.runOps([{ kernel: c.kernel, inputs: hin, outputs: hout, attrs: c.attrs }]);
      hout.forEach((h, k) => {
        const got = dev.copyOut(h);
        if (c.exact?.includes(k)) {
          const ref = refOut[k]!;
          const want = ref instanceof Float64Array ? Float32Array.from(ref) : ref;
          const bad = Array.from(want).findIndex((v, j) => !Object.is(v, got[j]));
          assert.equal(bad, -1, `${c.kernel} output ${k} differs at ${bad}: got ${got[bad]}, expected ${want[bad]}`);
          return;
        }
        // Integer outputs (hashes, argmax, labels) must match exactly.
        if (!(got instanceof Float32Array)) assert.deepEqual(Array.from(got), Array.from(refOut[k]!), `${c.kernel} output ${k} differs`);
        const err = relErr(got, refOut[k]!);
        assert.ok(err < 1e-5, `${c.kernel} output ${k}: rel err ${err.toExponential(2)} >= 1e-5`);
      });
      [...hin, ...hout].forEach((h) => dev.free(h));
    });
  });

  it('dropout: the mask is identical to the reference and keeps about keepProb of the elements', async () => {
    const N = 100_000;
    for (const [keepProb, seed, step] of [[0.5, 42, 0], [0.5, 42, 1], [0.8, 7, 1000], [0.1, 2 ** 40, 3]] as const) {
      const attrs = { N, keepProb, seed };
      const x = dev.alloc(N), y = dev.alloc(N), mask = dev.alloc(N), h = dev.alloc(3);
      dev.copyIn(x, new Float32Array(N).fill(1));
      dev.copyIn(h, [0, step, 1]);
      await dev.runOps([{ kernel: 'dropout_forward', inputs: [x, h], outputs: [y, mask], attrs }]);
      const got = dev.copyOut(mask);
      const refY = new Float64Array(N), refMask = new Float64Array(N);
      referenceKernels.dropout_forward!([new Float64Array(N).fill(1), Float64Array.from([0, step, 1])], [refY, refMask], attrs);
      assert.deepEqual(got, Float32Array.from(refMask), `mask ${JSON.stringify(attrs)}`);
      const kept = Array.from(got).filter((v) => v !== 0).length / N;
      // binomial sd is at most 0.0016 at N = 1e5; 5 sd
      assert.ok(Math.abs(kept - keepProb) < 0.008, `kept ${kept} for keepProb ${keepProb}`);
      assert.ok(got.every((v) => v === 0 || v === Math.fround(1 / keepProb)));
      [x, y, mask, h].forEach((b) => dev.free(b));
    }
    // another step or seed gives another mask
    const masks = [[42, 0], [42, 1], [43, 0]].map(([seed, step]) => {
      const y = new Float64Array(1000), m = new Float64Array(1000);
      referenceKernels.dropout_forward!([new Float64Array(1000).fill(1), Float64Array.from([0, step!, 1])], [y, m], { N: 1000, keepProb: 0.5, seed: seed! });
      return m;
    });
    const same = (a: Float64Array, b: Float64Array) => a.filter((v, k) => v === b[k]).length / a.length;
    assert.ok(same(masks[0]!, masks[1]!) < 0.6 && same(masks[0]!, masks[2]!) < 0.6, 'masks of other steps/seeds are unrelated');
  });

  it('covers every kernel of the contract', () => {
    const covered = new Set(cases.map((c) => c.kernel));
    const missing = dev.kernelNames().filter((k) => !covered.has(k));
    assert.deepEqual(missing, []);
    assert.deepEqual(Object.keys(referenceKernels).filter((k) => !dev.kernelNames().includes(k)), []);
  });

  it('rejects bad input naming op, device and sizes, and changes nothing: contract errors at compile time, bad values at run time', async () => {
    const logits = dev.alloc(6), labels = dev.alloc(3, 'i32'), h = dev.alloc(8), loss = dev.alloc(1), probs = dev.alloc(6);
    dev.copyIn(labels, [0, 1, 7]);
    dev.copyIn(h, [0, 0, 1]);
    dev.copyIn(probs, [9, 9, 9, 9, 9, 9]);
    await assert.rejects(
      dev.runOps([{ kernel: 'softmax_xent_forward', inputs: [logits, labels, h], outputs: [loss, probs], attrs: { B: 3, C: 2 } }]),
      (e: Error) => /softmax_xent_forward/.test(e.message) && e.message.includes(dev.name) && /7/.test(e.message),
    );
    assert.deepEqual(Array.from(dev.copyOut(probs)), [9, 9, 9, 9, 9, 9]);
    // A buffer too small for its shape is a contract error: compile throws, nothing is queued.
    assert.throws(
      () => dev.compile([{ kernel: 'dense_forward', inputs: [logits, logits, logits], outputs: [probs], attrs: { B: 3, I: 3, O: 2 } }]),
      (e: Error) => /dense_forward/.test(e.message) && e.message.includes(dev.name) && /\(B,I\)/.test(e.message) && /9/.test(e.message),
    );
    assert.throws(() => dev.compile([{ kernel: 'no_such_kernel', inputs: [], outputs: [] }]), /no kernel named 'no_such_kernel'/);
    // maxpool_backward: an argmax outside its window is an error naming the position and value, dx unchanged
    const pool = { B: 1, H: 2, W: 3, C: 1, KH: 2, KW: 2, SH: 2, SW: 2, padding: 1, OH: 1, OW: 2 };
    const pdy = dev.alloc(2), pam = dev.alloc(2, 'i32'), pdx = dev.alloc(6);
    dev.copyIn(pam, [1, 0]);
    dev.copyIn(pdx, [9, 9, 9, 9, 9, 9]);
    await assert.rejects(
      dev.runOps([{ kernel: 'maxpool_backward', inputs: [pdy, pam], outputs: [pdx], attrs: pool }]),
      (e: Error) => /maxpool_backward/.test(e.message) && /o=1 is 0/.test(e.message),
    );
    assert.deepEqual(Array.from(dev.copyOut(pdx)), [9, 9, 9, 9, 9, 9]);
    assert.throws(
      () => dev.compile([{ kernel: 'conv2d_forward', inputs: [pdx, pdx, pdx], outputs: [pdx], attrs: { B: 1, H: 2, W: 3, C: 1, K: 1, KH: 1, KW: 1, SH: 1, SW: 1, padding: 0, OH: 3, OW: 3 } }]),
      (e: Error) => /conv2d_forward/.test(e.message) && /OH=3 does not match/.test(e.message),
    );
    [pdy, pam, pdx].forEach((b) => dev.free(b));
    [logits, labels, h, loss, probs].forEach((b) => dev.free(b));
  });
});
