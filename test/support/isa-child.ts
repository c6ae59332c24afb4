// Run by test/kernel-isa.test.ts in a child process whose TOWERLINE_ISA picks the CPU kernels' path (Note [Kernel
// ISA]): the path's kernels against the float64 reference at the tail sizes, then a short 2-tower training run;
// prints one JSON line with the errors, the replica check and hashes of every output, for the parent to compare.
import { createHash } from 'node:crypto';
import { NativeDevice } from '../../src/backend/native-device.js';
import { native } from '../../src/native/addon.js';
import { referenceKernels, referenceSignatures } from '../../src/reference/kernels.js';
import { relErr, testRandom } from '../../src/reference/relerr.js';
import { blocks, createRuntime, type ModelSpec } from '../../src/index.js';
import { TAIL_SIZES } from './tail-sizes.js';

type Spec = { kernel: string; attrs: Record<string, number>; sizes: number[]; outs: number[] };
const hyper = 8;

/** The kernels with per-ISA loops (elementwise, optimizers, the fused tail, activations (sigmoid's forward too), LRN, max pooling, the gather). */
function cases(N: number): Spec[] {
  const tail = { clipNorm: 0.5, decay: 0.99 };
  const lrn = { depthRadius: 4, bias: 1, alpha: 0.01, beta: 0.75 };
  return [
    { kernel: 'sum_squares', attrs: { N }, sizes: [N], outs: [1] },
    { kernel: 'l2_loss', attrs: { N, lambda: 0.01 }, sizes: [N], outs: [1] },
    { kernel: 'l2_backward', attrs: { N, lambda: 0.01 }, sizes: [N], outs: [N] },
    { kernel: 'l2_grad_norm', attrs: { N, lambda: 0.01 }, sizes: [N], outs: [N, 1, 1] },
    { kernel: 'l2_grad_norm', attrs: { N, lambda: 0.01 }, sizes: [N], outs: [N, 1, 1, 1] },
    { kernel: 'clip_by_norm', attrs: { N, clipNorm: 0.5 }, sizes: [1], outs: [N] },
    { kernel: 'scale', attrs: { N, factor: -1.5 }, sizes: [], outs: [N] },
    { kernel: 'axpy', attrs: { N, alpha: 0.3 }, sizes: [N], outs: [N] },
    { kernel: 'sgd_update', attrs: { N }, sizes: [N, hyper], outs: [N] },
    { kernel: 'momentum_update', attrs: { N, momentum: 0.9, nesterov: 1 }, sizes: [N, hyper], outs: [N, N] },
    { kernel: 'adam_update', attrs: { N, beta1: 0.5, beta2: 0.9, epsilon: 1e-8 }, sizes: [N, hyper], outs: [N, N, N] },
    { kernel: 'ema_update', attrs: { N, decay: 0.99 }, sizes: [N], outs: [N] },
    { kernel: 'fused_sgd_update', attrs: { N, ...tail }, sizes: [1, hyper], outs: [N, N, N] },
    { kernel: 'fused_momentum_update', attrs: { N, momentum: 0.9, nesterov: 0, ...tail }, sizes: [1, hyper], outs: [N, N, N, N] },
    { kernel: 'fused_adam_update', attrs: { N, beta1: 0.5, beta2: 0.9, epsilon: 1e-8, ...tail }, sizes: [1, hyper], outs: [N, N, N, N, N] },
    { kernel: 'relu_forward', attrs: { N }, sizes: [N], outs: [N] },
    { kernel: 'relu_backward', attrs: { N }, sizes: [N, N], outs: [N] },
    { kernel: 'sigmoid_forward', attrs: { N }, sizes: [N], outs: [N] },
    { kernel: 'sigmoid_backward', attrs: { N }, sizes: [N, N], outs: [N] },
    { kernel: 'tanh_backward', attrs: { N }, sizes: [N, N], outs: [N] },
    { kernel: 'dense_backward', attrs: { B: 3, I: 2, O: N }, sizes: [6, 2 * N, 3 * N], outs: [2 * N, N] },
    { kernel: 'lrn_forward', attrs: { N: 3, C: N, ...lrn }, sizes: [3 * N], outs: [3 * N, 3 * N] },
    { kernel: 'lrn_backward', attrs: { N: 3, C: N, ...lrn }, sizes: [3 * N, 3 * N, 3 * N, 3 * N], outs: [3 * N] },
    { kernel: 'lrn_backward', attrs: { N: 3, C: N, ...lrn, beta: 0.5 }, sizes: [3 * N, 3 * N, 3 * N, 3 * N], outs: [3 * N] },
    // SAME 3x3/2 pooling of 2 images 5x4 with N channels: OH = 3, OW = 2
    { kernel: 'maxpool_forward', attrs: { B: 2, H: 5, W: 4, C: N, KH: 3, KW: 3, SH: 2, SW: 2, padding: 1, OH: 3, OW: 2 }, sizes: [40 * N], outs: [12 * N, 12 * N] },
    { kernel: 'gather_rows_u8', attrs: { B: 5, D: N, R: 9, scale: 1 / 255 }, sizes: [9 * N, 5], outs: [5 * N] },
  ];
}

async function kernels(dev: NativeDevice, hash: ReturnType<typeof createHash>) {
  let worst = { err: 0, what: '' };
  let seed = 1;
  for (const N of TAIL_SIZES) {
    for (const c of cases(N)) {
      const r = testRandom(seed++);
      const sig = referenceSignatures[c.kernel]!;
      const gen = (name: string, dtype: string, n: number): number[] =>
        dtype === 'u8' ? Array.from({ length: n }, () => Math.floor(r() * 256))
        : dtype === 'i32' ? Array.from({ length: n }, () => Math.floor(r() * 9))
        : name === 'hyper' ? [0.05, 3, 0.125, 0, 0, 0, 0, 0]
        : name === 's' ? [4]
        : name === 'scale' ? Array.from({ length: n }, () => 1 + r())
        : c.kernel === 'sigmoid_forward' ? Array.from({ length: n }, () => (r() - 0.5) * 240)
        : name === 'v' || name === 'y' ? Array.from({ length: n }, () => 0.01 + 0.98 * r())
        : Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.05 + r()));
      const ins = c.sizes.map((n, k) => ({ vals: gen(sig.inputs[k]![0], sig.inputs[k]![1], n), dtype: sig.inputs[k]![1] }));
      const outs = c.outs.map((n, k) => ({ vals: gen(sig.outputs[k]![0], sig.outputs[k]![1], n), dtype: sig.outputs[k]![1] }));
      const asRef = (v: { vals: number[]; dtype: string }) =>
        v.dtype === 'f32' ? Float64Array.from(Float32Array.from(v.vals)) : v.dtype === 'i32' ? Int32Array.from(v.vals) : Uint8Array.from(v.vals);
      const refOut = outs.map(asRef);
      referenceKernels[c.kernel]!(ins.map(asRef), refOut, c.attrs);
      const up = (v: { vals: number[]; dtype: string }) => {
        const h = dev.alloc(v.vals.length, v.dtype as 'f32');
        dev.copyIn(h, v.vals);
        return h;
      };
      const hin = ins.map(up), hout = outs.map(up);
      await dev.runOps([{ kernel: c.kernel, inputs: hin, outputs: hout, attrs: c.attrs }]);
      hout.forEach((h, k) => {
        const got = dev.copyOut(h) as Float32Array;
        hash.update(Buffer.from(got.buffer, got.byteOffset, got.byteLength));
        const err = relErr(got, refOut[k]!);
        if (!(err <= worst.err)) worst = { err, what: `${c.kernel} N=${N} output ${k}` };
      });
      [...hin, ...hout].forEach((h) => dev.free(h));
    }
  }
  return worst;
}

async function training(hash: ReturnType<typeof createHash>) {
  const model: ModelSpec = {
    name: 'isa',
    input: { shape: [33] },
    layers: [
      { type: 'dense', units: 17, activation: 'tanh', l2: 1e-3 },
      { type: 'dense', units: 15, activation: 'relu' },
      { type: 'dense', units: 7 },
    ],
  };
  const replicas: boolean[] = [];
  for (const optimizer of [{ type: 'momentum' as const, lr: 0.05, momentum: 0.9, nesterov: true }, { type: 'adam' as const, lr: 0.01 }]) {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      await rt.train({ model, optimizer, clipNorm: 0.3, emaDecay: 0.9, data: blocks({ batchSize: 30, count: 240, dim: 33, seed: 3 }), steps: 6, seed: 5 }).done;
      replicas.push((await rt.checkReplicas()).consistent);
      const weights = await rt.readWeights();
      for (const [, w] of [...weights[0]!].sort(([a], [b]) => a.localeCompare(b))) hash.update(Buffer.from(w.buffer, w.byteOffset, w.byteLength));
    } finally {
      await rt.close();
    }
  }
  return replicas;
}

const { isa, available } = native().kernelIsa();
const dev = NativeDevice.open('cpu', 0);
const kh = createHash('sha256'), th = createHash('sha256');
const worst = await kernels(dev, kh);
await dev.close();
const replicas = await training(th);
console.log(JSON.stringify({ isa, available, worst, kernelHash: kh.digest('hex'), replicas, trainingHash: th.digest('hex') }));
