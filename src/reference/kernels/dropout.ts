// Dropout and its hash (float64 reference).
import { fail, dim, num, need, f64, defineKernel, needHyper } from './define.js';

/** MurmurHash3's 32-bit finaliser (a bijection); the dropout hash must match cpp/cpu/kernels_cpu.h bit for bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Key of (seed, step): both 32-bit halves of each, chained through fmix32. */
function dropoutKey(seed: number, step: number): [number, number] {
  const lo = (v: number): number => v % 4294967296, hi = (v: number): number => Math.floor(v / 4294967296);
  let k = fmix32((lo(seed) ^ 0x9e3779b9) >>> 0);
  k = fmix32((k ^ hi(seed) ^ 0x7f4a7c15) >>> 0);
  k = fmix32((k ^ lo(step) ^ 0x85ebca6b) >>> 0);
  k = fmix32((k ^ hi(step) ^ 0xc2b2ae35) >>> 0);
  return [k, fmix32((k ^ 0x27d4eb2f) >>> 0)];
}

/** 32-bit hash of element i (< 2^32) under a key: fmix32(fmix32(i + k1) ^ k2). */
export function dropoutHash(seed: number, step: number, i: number): number {
  const [k1, k2] = dropoutKey(seed, step);
  return fmix32((fmix32((i + k1) >>> 0) ^ k2) >>> 0);
}

defineKernel('dropout_forward', { inputs: [['x', 'f32'], ['hyper', 'f32']], outputs: [['y', 'f32'], ['mask', 'f32']] },
  (inp, out, a) => {
    // x is (N), hyper; y is (N), mask is (N): 1/keepProb where hash(seed, step, i) < ceil(keepProb·2^32), else 0;
    // y = x·mask. step = hyper[1] (the optimizer step, rewritten before every step of a compiled program).
    const op = 'dropout_forward';
    const N = dim(op, a, 'N');
    const keep = num(op, a, 'keepProb');
    if (!(keep > 0 && keep <= 1)) fail(op, `attribute keepProb must be in (0, 1], got ${keep}`);
    const hyper = f64(inp[1]);
    needHyper(op, hyper, 2);
    const seed = dim(op, a, 'seed');
    const step = hyper[1]!;
    if (!(Number.isInteger(step) && step >= 0)) fail(op, `hyper[1] (the step) must be a non-negative integer, got ${step}`);
    if (seed >= 9.0e15 || step >= 9.0e15) fail(op, 'attribute seed and hyper[1] must be below 9e15');
    if (N > 4294967296) fail(op, `N=${N} exceeds the 2^32 elements the dropout hash counts`);
    const x = f64(inp[0]), y = f64(out[0]), mask = f64(out[1]);
    need(op, 'x', x, N, `N=${N}`);
    need(op, 'y', y, N, `N=${N}`);
    need(op, 'mask', mask, N, `N=${N}`);
    const threshold = Math.ceil(keep * 4294967296);
    const [k1, k2] = dropoutKey(seed, step);
    for (let i = 0; i < N; i++) {
      const h = fmix32((fmix32((i + k1) >>> 0) ^ k2) >>> 0);
      mask[i] = h < threshold ? 1 / keep : 0;
      y[i] = x[i] * mask[i];
    }
  });

defineKernel('dropout_backward', { inputs: [['dy', 'f32'], ['mask', 'f32']], outputs: [['dx', 'f32']] },
  (inp, out, a) => {
    // dy is (N), mask is (N); dx is (N) = dy·mask (dx may alias dy)
    const op = 'dropout_backward';
    const N = dim(op, a, 'N');
    const dy = f64(inp[0]), mask = f64(inp[1]), dx = f64(out[0]);
    need(op, 'dy', dy, N, `N=${N}`);
    need(op, 'mask', mask, N, `N=${N}`);
    need(op, 'dx', dx, N, `N=${N}`);
    for (let i = 0; i < N; i++) dx[i] = dy[i] * mask[i];
  });
