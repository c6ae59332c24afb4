// The kernel contract table (Note [Kernel contracts]) against everything that repeats it: the hyper slots of
// src/native/hyper.ts, the float64 reference's signatures, the CPU device's kernels, docs/kernels.md; and the
// checks it drives, run at compile time for every kernel: sizes, dtypes, attributes and arity.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { native, type ContractArg, type KernelContract } from '../src/native/addon.js';
import { HYPER_SIZE, HYPER_USED, HyperSlot } from '../src/native/hyper.js';
import { referenceSignatures } from '../src/reference/kernels.js';
import { KERNEL_DOCS_PATH, renderKernelDocs } from '../tools/kernel-docs.js';
import { NativeDevice } from '../src/backend/native-device.js';

const contract = native().contract();
const dev = NativeDevice.open('cpu', 0);
after(() => dev.close());

describe('the contract and what repeats it', () => {
  it('hyper slots: src/native/hyper.ts equals cpp/hyper.h', () => {
    assert.deepEqual(contract.hyper, { lr: HyperSlot.lr, step: HyperSlot.step, gradScale: HyperSlot.gradScale, used: HYPER_USED, size: HYPER_SIZE });
    assert.deepEqual(Object.keys(HyperSlot).sort(), ['gradScale', 'lr', 'step']);
  });

  it('the float64 reference implements exactly the table, with the same arguments, dtypes and optional outputs', () => {
    assert.deepEqual(Object.keys(referenceSignatures).sort(), contract.kernels.map((k) => k.name).sort());
    const pairs = (l: ContractArg[]) => l.map((a) => [a.name, a.dtype]);
    for (const k of contract.kernels) {
      const sig = referenceSignatures[k.name]!;
      assert.deepEqual(sig.inputs.map((a) => [...a]), pairs(k.inputs), `${k.name} inputs`);
      assert.deepEqual(sig.outputs.map((a) => [...a]), pairs(k.outputs), `${k.name} outputs`);
      assert.equal(sig.optionalOutputs ?? 0, k.optionalOutputs, `${k.name} optional outputs`);
    }
  });

  it('every kernel the cpu device registers is in the table, and every entry has a cpu kernel', () => {
    assert.deepEqual(dev.kernelNames().sort(), contract.kernels.map((k) => k.name).sort());
  });

  // The CUDA table is only built where nvcc is (and only runs on a GPU): read it from the sources, so a kernel added
  // to the contract without its CUDA twin fails here, not on the first lent GPU (seen 2026-11-30: add_grad_norm).
  it('every entry of the table has a cuda kernel in cpp/cuda, and cpp/cuda registers nothing else', () => {
    const dir = new URL('../cpp/cuda/', import.meta.url);
    const names = readdirSync(dir).filter((f) => f.endsWith('.cu') || f.endsWith('.cc'))
      .flatMap((f) => [...readFileSync(new URL(f, dir), 'utf8').matchAll(/^TL_CUDA_KERNEL\((\w+)\)/gm)].map((m) => m[1]!));
    assert.deepEqual(names.sort(), contract.kernels.map((k) => k.name).sort());
  });

  it('docs/kernels.md is the rendering of the table (run `npm run docs:kernels` after changing it)', () => {
    assert.equal(readFileSync(KERNEL_DOCS_PATH, 'utf8'), renderKernelDocs(contract), 'docs/kernels.md is stale: run `npm run docs:kernels`');
  });
});

// One valid set of attributes per kernel (the constraints between attributes hold).
const conv = { B: 1, H: 4, W: 5, C: 2, K: 3, KH: 3, KW: 3, SH: 1, SW: 1, padding: 1, OH: 4, OW: 5 };
const pool = { B: 1, H: 4, W: 5, C: 2, KH: 2, KW: 2, SH: 2, SW: 2, padding: 0, OH: 2, OW: 2 };
const lrn = { N: 3, C: 4, depthRadius: 1, bias: 1, alpha: 0.1, beta: 0.75 };
const VALID: Record<string, Record<string, number>> = {
  dense_forward: { B: 2, I: 3, O: 4 },
  dense_backward: { B: 2, I: 3, O: 4, accumulate: 1 },
  matmul: { M: 2, N: 3, K: 4, transA: 1, transB: 0 },
  ...Object.fromEntries(['relu', 'sigmoid', 'tanh'].flatMap((a) => [[`${a}_forward`, { N: 5 }], [`${a}_backward`, { N: 5 }]])),
  softmax_xent_forward: { B: 2, C: 3 },
  softmax_xent_backward: { B: 2, C: 3 },
  mean_forward: { B: 2, C: 3 },
  mean_backward: { B: 2, C: 3 },
  accuracy_count: { B: 2, C: 3 },
  l2_loss: { N: 5, lambda: 0.5 },
  l2_backward: { N: 5, lambda: 0.5 },
  sum_squares: { N: 5 },
  l2_grad_norm: { N: 5, lambda: 0.5 },
  add_grad_norm: { N: 5, lambda: 0.5 },
  dense_grad_norm: { N: 5, B: 2, I: 3, O: 4, at: 3, lambda: 0.5 },
  clip_by_norm: { N: 5, clipNorm: 1 },
  fill: { N: 5, value: 2 },
  scale: { N: 5, factor: 2 },
  axpy: { N: 5, alpha: 2 },
  copy: { N: 5 },
  hash_bits: { N: 5 },
  sgd_update: { N: 5 },
  momentum_update: { N: 5, momentum: 0.9, nesterov: 1 },
  adam_update: { N: 5, beta1: 0.9, beta2: 0.99, epsilon: 1e-8 },
  ema_update: { N: 5, decay: 0.9 },
  fused_sgd_update: { N: 5, clipNorm: 1, decay: 0.9 },
  fused_momentum_update: { N: 5, momentum: 0.9, nesterov: 1, clipNorm: 1, decay: 0.9 },
  fused_adam_update: { N: 5, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, clipNorm: 0, decay: 0.9 },
  gather_rows_u8: { B: 2, D: 3, R: 4, scale: 1 },
  gather_rows_f32: { B: 2, D: 3, R: 4 },
  gather_labels_u8: { B: 2, R: 4 },
  crop_flip_standardize_u8: { B: 2, R: 3, H: 4, W: 5, C: 2, OH: 3, OW: 4 },
  conv2d_forward: conv,
  conv2d_backward: { ...conv, accumulate: 0 },
  maxpool_forward: pool,
  maxpool_backward: pool,
  lrn_forward: lrn,
  lrn_backward: lrn,
  dropout_forward: { N: 5, keepProb: 0.5, seed: 3 },
  dropout_backward: { N: 5 },
};

/** The elements a contract shape stands for: '(B,3)' -> B·3; 'hyper' -> the hyper block. */
function numel(shape: string, attrs: Record<string, number>): number {
  if (shape === 'hyper') return HYPER_SIZE;
  return shape.replace(/[()]/g, '').split(',').reduce((n, f) => n * (/^\d+$/.test(f) ? Number(f) : attrs[f]!), 1);
}

describe('compile-time checks, driven by the table, for every kernel', () => {
  it('the test has a valid call for every kernel of the table', () => {
    assert.deepEqual(Object.keys(VALID).sort(), contract.kernels.map((k) => k.name).sort());
  });

  const owned: number[] = [];
  after(() => owned.forEach((h) => dev.free(h)));
  const alloc = (n: number, dtype: 'f32' | 'i32' | 'u8') => {
    const h = dev.alloc(Math.max(1, n), dtype);
    owned.push(h);
    return h;
  };
  const buffers = (k: KernelContract, attrs: Record<string, number>, list: ContractArg[]) => list.map((a) => alloc(numel(a.shape, attrs), a.dtype));
  const compiles = (k: KernelContract, inputs: number[], outputs: number[], attrs: Record<string, number>) =>
    dev.releaseProgram(dev.compile([{ kernel: k.name, inputs, outputs, attrs }]));
  const rejects = (k: KernelContract, inputs: number[], outputs: number[], attrs: Record<string, number>, what: RegExp, why: string) =>
    assert.throws(
      () => compiles(k, inputs, outputs, attrs),
      (e: Error) => e.message.startsWith(`${k.name} on ${dev.name}`) && what.test(e.message),
      `${k.name}: ${why}`,
    );
  const other = { f32: 'i32', i32: 'f32', u8: 'f32' } as const;
  const esc = (s: string) => s.replace(/[()]/g, '\\$&');

  for (const k of contract.kernels) {
    it(`${k.name}: a valid call compiles; each buffer too small or of another dtype, each missing attribute, a missing input: rejected when compiled`, () => {
      const attrs = VALID[k.name]!;
      const ins = buffers(k, attrs, k.inputs);
      const outs = buffers(k, attrs, k.outputs);
      compiles(k, ins, outs, attrs);
      if (k.optionalOutputs > 0) compiles(k, ins, outs.slice(0, outs.length - k.optionalOutputs), attrs);
      const sides = [['inputs', k.inputs, ins], ['outputs', k.outputs, outs]] as const;
      for (const [side, specs, hs] of sides)
        specs.forEach((a, i) => {
          const swap = (h: number) => (side === 'inputs' ? [hs.map((x, j) => (j === i ? h : x)), outs] : [ins, hs.map((x, j) => (j === i ? h : x))]);
          const need = numel(a.shape, attrs);
          const small = a.shape === 'hyper' ? HYPER_USED - 1 : need - 1;
          if (small >= 1) {
            const [si, so] = swap(alloc(small, a.dtype));
            const shape = a.shape === 'hyper' ? 'hyper slots' : esc(a.shape);
            rejects(k, si!, so!, attrs, new RegExp(`${a.name} \\(buffer #\\d+\\) must hold .*${shape}.* = ${a.shape === 'hyper' ? HYPER_USED : need} elements, but holds ${small}`), `${a.name} too small`);
          }
          const [ti, to] = swap(alloc(need, other[a.dtype]));
          rejects(k, ti!, to!, attrs, new RegExp(`${a.name} \\(buffer #\\d+\\) must be ${a.dtype}, but is ${other[a.dtype]}`), `${a.name} of another dtype`);
        });
      for (const a of k.attrs) {
        const { [a.name]: _, ...without } = attrs;
        if (a.kind === 'flag') {
          compiles(k, ins, outs, without); // flags default to 0
          rejects(k, ins, outs, { ...attrs, [a.name]: 2 }, new RegExp(`attribute ${a.name} must be 0 or 1, got 2`), `${a.name} = 2`);
        } else {
          rejects(k, ins, outs, without, new RegExp(`missing attribute '${a.name}'`), `no ${a.name}`);
        }
        if (a.kind === 'dim') rejects(k, ins, outs, { ...attrs, [a.name]: 1.5 }, new RegExp(`attribute '${a.name}' must be a non-negative integer, got 1.5`), `${a.name} = 1.5`);
      }
      if (ins.length > 0) rejects(k, ins.slice(1), outs, attrs, new RegExp(`expected ${ins.length} input buffers, got ${ins.length - 1}`), 'an input short');
    });
  }
});
