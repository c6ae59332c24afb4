// The CPU kernels that spread their work over the device's GEMM threads (Note [Conv chunks] in
// cpp/cpu/kernels_conv2d.cc; LRN, max pooling, activations, optimizer updates and the row gather by blocks,
// forEachRowBlock in cpp/cpu/kernels_cpu.h): the same bits on 1, 2 and 3 GEMM threads, and within 1e-5 of the float64
// reference at shapes that cut into several image groups and parts (and one image larger than a
// group, cut into sub-chunks).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NativeDevice } from '../src/backend/native-device.js';
import { referenceKernels } from '../src/reference/kernels.js';
import { relErr, testRandom } from '../src/reference/relerr.js';
import { cifar10, createRuntime } from '../src/runtime.js';
import { cifar10Cnn } from '../src/model/spec.js';
import { sameBits } from './support/runtime.js';

const THREADS = [1, 2, 3];
const devs = THREADS.map((gemmThreads) => NativeDevice.open('cpu', 0, { gemmThreads }));
after(() => devs.forEach((d) => d.close()));

interface Case {
  kernel: string;
  attrs: Record<string, number>;
  inputs: number[][];   // values, f32 unless ints says otherwise
  ints?: number[];      // input positions holding i32
  u8?: number[];        // input positions holding u8
  outputs: Array<{ n: number; i32?: boolean; init?: number[] }>;
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
};

async function runOn(dev: NativeDevice, c: Case): Promise<Array<Float32Array | Int32Array>> {
  const hin = c.inputs.map((v, i) => {
    const h = dev.alloc(v.length, c.ints?.includes(i) ? 'i32' : c.u8?.includes(i) ? 'u8' : 'f32');
    dev.copyIn(h, v);
    return h;
  });
  const hout = c.outputs.map((o) => {
    const h = dev.alloc(o.n, o.i32 ? 'i32' : 'f32');
    dev.copyIn(h, o.init ?? new Array(o.n).fill(7));
    return h;
  });
  await dev.runOps([{ kernel: c.kernel, inputs: hin, outputs: hout, attrs: c.attrs }]);
  const out = hout.map((h) => dev.copyOut(h) as Float32Array | Int32Array);
  [...hin, ...hout].forEach((h) => dev.free(h));
  return out;
}

function checkReference(c: Case, got: Array<Float32Array | Int32Array>): void {
  const refIn = c.inputs.map((v, i) =>
    c.ints?.includes(i) ? Int32Array.from(v) : c.u8?.includes(i) ? Uint8Array.from(v) : Float64Array.from(Float32Array.from(v)));
  const refOut = c.outputs.map((o) => (o.i32 ? new Int32Array(o.n) : Float64Array.from(Float32Array.from(o.init ?? new Array(o.n).fill(7)))));
  referenceKernels[c.kernel]!(refIn, refOut, c.attrs);
  got.forEach((g, k) => {
    if (g instanceof Int32Array) return assert.equal(same(g, refOut[k]!), -1, `${c.kernel} output ${k} (integers) differs`);
    const err = relErr(g, refOut[k]!);
    assert.ok(err < 1e-5, `${c.kernel} output ${k}: rel err ${err.toExponential(2)} >= 1e-5`);
  });
}

const vals = (r: () => number, n: number) => Array.from({ length: n }, () => (r() * 2 - 1) + (r() < 0.5 ? -0.05 : 0.05));

function convCases(): Case[] {
  const out: Case[] = [];
  // B, H, W, C, K, KH, KW, S, padding (1 SAME): CIFAR conv2 geometry with 17 images (9 groups of 2 in 5 parts),
  // CIFAR conv1 with 13 (2 groups), one 40x40 image per group larger than a group (sub-chunks), strided, pointwise
  const shapes = [
    [17, 12, 12, 64, 16, 5, 5, 1, 1],
    [13, 24, 24, 3, 8, 5, 5, 1, 1],
    [2, 40, 40, 24, 4, 5, 5, 1, 1],
    [11, 9, 7, 5, 6, 3, 3, 2, 0],
    [19, 6, 6, 4, 3, 1, 1, 1, 0],
  ];
  shapes.forEach(([B, H, W, C, K, KH, KW, S, padding], i) => {
    const r = testRandom(700 + i);
    const od = (n: number, k: number) => (padding ? Math.ceil(n / S!) : Math.floor((n - k) / S!) + 1);
    const OH = od(H!, KH!), OW = od(W!, KW!);
    const attrs = { B: B!, H: H!, W: W!, C: C!, K: K!, KH: KH!, KW: KW!, SH: S!, SW: S!, padding: padding!, OH, OW };
    const nx = B! * H! * W! * C!, nw = KH! * KW! * C! * K!, ny = B! * OH * OW * K!;
    const x = vals(r, nx), w = vals(r, nw), dy = vals(r, ny);
    out.push({ kernel: 'conv2d_forward', attrs, inputs: [x, w, vals(r, K!)], outputs: [{ n: ny }] });
    for (const accumulate of [0, 1])
      out.push({
        kernel: 'conv2d_backward', attrs: { ...attrs, accumulate }, inputs: [x, w, dy],
        outputs: [{ n: nw, init: vals(r, nw) }, { n: K!, init: vals(r, K!) }, ...(accumulate ? [] : [{ n: nx }])],
      });
  });
  return out;
}

function poolLrnCases(): Case[] {
  const out: Case[] = [];
  const r = testRandom(800);
  // CIFAR pool1 / LRN geometry at 23 images: several row blocks
  const B = 23, H = 24, W = 24, C = 64, OH = 12, OW = 12;
  const attrs = { B, H, W, C, KH: 3, KW: 3, SH: 2, SW: 2, padding: 1, OH, OW };
  const x = Array.from({ length: B * H * W * C }, (_, i) => ((i * 7919) % 100003) / 100003 - 0.5);  // no ties
  out.push({ kernel: 'maxpool_forward', attrs, inputs: [x], outputs: [{ n: B * OH * OW * C }, { n: B * OH * OW * C, i32: true }] });
  const ny = B * OH * OW * C;
  const y = new Float64Array(ny), am = new Int32Array(ny);
  referenceKernels.maxpool_forward!([Float64Array.from(Float32Array.from(x))], [y, am], attrs);
  out.push({ kernel: 'maxpool_backward', attrs, inputs: [vals(r, ny), Array.from(am)], ints: [1], outputs: [{ n: B * H * W * C }] });
  const N = 4500, lrn = { N, C, depthRadius: 4, bias: 1, alpha: 0.001 / 9, beta: 0.75 };
  out.push({ kernel: 'lrn_forward', attrs: lrn, inputs: [vals(r, N * C)], outputs: [{ n: N * C }, { n: N * C }] });
  const scale = Array.from({ length: N * C }, () => 1 + r() * 2);
  out.push({ kernel: 'lrn_backward', attrs: lrn, inputs: [vals(r, N * C), vals(r, N * C), vals(r, N * C), scale], outputs: [{ n: N * C }] });
  return out;
}

/**
 * Elementwise kernels, the optimizer updates (plain and fused) and the row gather, at sizes of several blocks and above
 * forEachRowBlock's kFanOutFloats (2^18 floats; below it a pass stays on the calling thread).
 */
function elementCases(): Case[] {
  const out: Case[] = [];
  const r = testRandom(900);
  const N = 300_007;
  const pos = (n: number) => Array.from({ length: n }, () => 0.01 + r() * 0.98);
  const hyper = [0.05, 3, 1 / 7, 0, 0, 0, 0, 0];
  out.push({ kernel: 'relu_forward', attrs: { N }, inputs: [vals(r, N)], outputs: [{ n: N }] });
  out.push({ kernel: 'relu_backward', attrs: { N }, inputs: [vals(r, N), vals(r, N)], outputs: [{ n: N }] });
  out.push({ kernel: 'sigmoid_forward', attrs: { N }, inputs: [vals(r, N)], outputs: [{ n: N }] });
  out.push({ kernel: 'sigmoid_backward', attrs: { N }, inputs: [pos(N), vals(r, N)], outputs: [{ n: N }] });
  out.push({ kernel: 'sgd_update', attrs: { N }, inputs: [vals(r, N), hyper], outputs: [{ n: N, init: vals(r, N) }] });
  out.push({ kernel: 'momentum_update', attrs: { N, momentum: 0.9, nesterov: 1 }, inputs: [vals(r, N), hyper], outputs: [{ n: N, init: vals(r, N) }, { n: N, init: vals(r, N) }] });
  out.push({ kernel: 'adam_update', attrs: { N, beta1: 0.5, beta2: 0.9, epsilon: 1e-8 }, inputs: [vals(r, N), hyper], outputs: [{ n: N, init: vals(r, N) }, { n: N, init: vals(r, N) }, { n: N, init: pos(N) }] });
  out.push({ kernel: 'ema_update', attrs: { N, decay: 0.99 }, inputs: [vals(r, N)], outputs: [{ n: N, init: vals(r, N) }] });
  const tail = { clipNorm: 5, decay: 0.99 };
  const grads = () => [{ n: N, init: vals(r, N) }, { n: N, init: vals(r, N) }];
  out.push({ kernel: 'fused_sgd_update', attrs: { N, ...tail }, inputs: [[50 + N], hyper], outputs: [...grads(), { n: N, init: vals(r, N) }] });
  out.push({ kernel: 'fused_momentum_update', attrs: { N, momentum: 0.9, nesterov: 0, ...tail }, inputs: [[50 + N], hyper], outputs: [...grads(), { n: N, init: vals(r, N) }, { n: N, init: vals(r, N) }] });
  out.push({ kernel: 'fused_adam_update', attrs: { N, beta1: 0.5, beta2: 0.9, epsilon: 1e-8, ...tail }, inputs: [[50 + N], hyper], outputs: [...grads(), { n: N, init: vals(r, N) }, { n: N, init: pos(N) }, { n: N, init: vals(r, N) }] });
  // long sums: blocks of 2^15 on the threads, added in block order (Note [Sixteen partial sums])
  out.push({ kernel: 'sum_squares', attrs: { N }, inputs: [vals(r, N)], outputs: [{ n: 1, init: [0.5] }] });
  out.push({ kernel: 'l2_loss', attrs: { N, lambda: 1e-3 }, inputs: [vals(r, N)], outputs: [{ n: 1, init: [0.5] }] });
  out.push({ kernel: 'l2_grad_norm', attrs: { N, lambda: 1e-3 }, inputs: [vals(r, N)], outputs: [{ n: N, init: vals(r, N) }, { n: 1, init: [0.5] }, { n: 1, init: [0.25] }] });
  out.push({ kernel: 'l2_grad_norm', attrs: { N, lambda: 1e-3 }, inputs: [vals(r, N)], outputs: [{ n: N, init: vals(r, N) }, { n: 1, init: [0.5] }, { n: 1, init: [0.25] }, { n: 1, init: [0.125] }] });
  // dense_backward at the MNIST MLP's shapes: the classifier layer's products (one slab each) and the hidden layer's,
  // cut into slabs (Note [GEMM threads])
  for (const [Bd, I, O] of [[128, 500, 10], [128, 784, 500]] as const)
    out.push({ kernel: 'dense_backward', attrs: { B: Bd, I, O, accumulate: 0 }, inputs: [vals(r, Bd * I), vals(r, I * O), vals(r, Bd * O)], outputs: [{ n: I * O }, { n: O }, { n: Bd * I }] });
  // the row gather above kFanOutFloats, and at MNIST's 128 x 784 (below it, above the gather's own lower fan-out)
  const D = 784, R = 1000;
  for (const B of [400, 128])
    out.push({
      kernel: 'gather_rows_u8', attrs: { B, D, R, scale: 1 / 255 }, u8: [0], ints: [1],
      inputs: [Array.from({ length: R * D }, () => Math.floor(r() * 256)), Array.from({ length: B }, () => Math.floor(r() * R))],
      outputs: [{ n: B * D }],
    });
  // CIFAR-10's input: crops, flips and standardisation of 160 images (several blocks)
  const [Rn, Bn, H, W, C, OH, OW] = [90, 160, 32, 32, 3, 24, 24];
  out.push({
    kernel: 'crop_flip_standardize_u8', attrs: { B: Bn, R: Rn, H, W, C, OH, OW }, u8: [0], ints: [1, 2],
    inputs: [
      Array.from({ length: Rn * H * W * C }, () => Math.floor(r() * 256)),
      Array.from({ length: Bn }, () => Math.floor(r() * Rn)),
      Array.from({ length: 3 * Bn }, (_, k) => Math.floor(r() * [H - OH + 1, W - OW + 1, 2][k % 3]!)),
    ],
    outputs: [{ n: Bn * OH * OW * C }],
  });
  return out;
}

describe('CPU kernels spread over the GEMM threads: the same bits on 1, 2, 3 threads, within 1e-5 of the reference', () => {
  for (const c of [...convCases(), ...poolLrnCases(), ...elementCases()]) {
    it(`${c.kernel} ${JSON.stringify(c.attrs)}`, async () => {
      const results: Array<Array<Float32Array | Int32Array>> = [];
      for (const d of devs) results.push(await runOn(d, c));
      assert.deepEqual(devs.map((d) => d.gemmThreads), THREADS);
      checkReference(c, results[0]!);
      for (let t = 1; t < THREADS.length; t++)
        results[t]!.forEach((o, k) => {
          const at = same(o, results[0]![k]!);
          assert.equal(at, -1, `${c.kernel} output ${k}: ${THREADS[t]} GEMM threads differ from 1 at ${at}`);
        });
    });
  }

  it('maxpool_backward: an argmax outside its window fails naming the first bad position, on any thread count', async () => {
    const attrs = { B: 9, H: 4, W: 4, C: 2, KH: 2, KW: 2, SH: 2, SW: 2, padding: 0, OH: 2, OW: 2 };
    const n = 9 * 2 * 2 * 2;
    const x = Array.from({ length: 9 * 16 * 2 }, (_, i) => i);
    const y = new Float64Array(n), am = new Int32Array(n);
    referenceKernels.maxpool_forward!([Float64Array.from(x)], [y, am], attrs);
    am[6 * 8 + 3] = 0;  // image 6
    am[8 * 8 + 1] = 5;  // image 8
    for (const d of devs) {
      await assert.rejects(runOn(d, { kernel: 'maxpool_backward', attrs, inputs: [new Array(n).fill(1), Array.from(am)], ints: [1], outputs: [{ n: x.length }] }),
        (e: Error) => /maxpool_backward/.test(e.message) && /o=51 is 0/.test(e.message));
    }
  });

  it('the CIFAR-10 CNN trains to the same weights on 1, 2 and 3 GEMM threads (every kernel of its step)', async () => {
    const train = async (gemmThreads: number) => {
      const rt = await createRuntime({ devices: 'cpu*1', gemmThreads });
      try {
        const data = cifar10({ batchSize: 20, generated: { count: 60, seed: 3 } });
        await rt.train({ model: cifar10Cnn(), optimizer: { type: 'momentum', lr: 0.05, momentum: 0.9 }, data, steps: 3, seed: 4 }).done;
        return (await rt.readWeights())[0]!;
      } finally {
        await rt.close();
      }
    };
    const [one, two, three] = [await train(1), await train(2), await train(3)];
    assert.ok(one.size >= 10, `weights read: ${[...one.keys()].join(', ')}`);
    for (const [name, w] of one) {
      assert.ok(sameBits(w, two.get(name)!), `${name} differs on 2 GEMM threads`);
      assert.ok(sameBits(w, three.get(name)!), `${name} differs on 3 GEMM threads`);
    }
  });
});
