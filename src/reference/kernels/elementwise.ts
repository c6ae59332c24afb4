// Regularisation, norms, elementwise, the replica hash (float64 reference).
import { dim, num, need, f64, i32, defineKernel } from './define.js';

// Regularisation, norms, elementwise

defineKernel('l2_loss', { inputs: [['w', 'f32']], outputs: [['loss', 'f32']] }, (inp, out, a) => {
  // w is (N); loss is (1), accumulated into
  const op = 'l2_loss';
  const N = dim(op, a, 'N');
  const lambda = num(op, a, 'lambda');
  const w = f64(inp[0]), loss = f64(out[0]);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'loss', loss, 1, 'scalar');
  let s = 0;
  for (let n = 0; n < N; n++) s += w[n] * w[n];
  loss[0] += lambda * 0.5 * s;
});

defineKernel('l2_backward', { inputs: [['w', 'f32']], outputs: [['g', 'f32']] }, (inp, out, a) => {
  // w is (N); g is (N), updated in place
  const op = 'l2_backward';
  const N = dim(op, a, 'N');
  const lambda = num(op, a, 'lambda');
  const w = f64(inp[0]), g = f64(out[0]);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'g', g, N, `N=${N}`);
  for (let n = 0; n < N; n++) g[n] += lambda * w[n];
});

defineKernel('sum_squares', { inputs: [['x', 'f32']], outputs: [['s', 'f32']] }, (inp, out, a) => {
  // x is (N); s is (1), accumulated into
  const op = 'sum_squares';
  const N = dim(op, a, 'N');
  const x = f64(inp[0]), s = f64(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  need(op, 's', s, 1, 'scalar');
  let acc = 0;
  for (let n = 0; n < N; n++) acc += x[n] * x[n];
  s[0] += acc;
});

defineKernel('clip_by_norm', { inputs: [['s', 'f32']], outputs: [['g', 'f32']] }, (inp, out, a) => {
  // s is (1), the global squared norm; g is (N), scaled in place
  const op = 'clip_by_norm';
  const N = dim(op, a, 'N');
  const clipNorm = num(op, a, 'clipNorm');
  const s = f64(inp[0]), g = f64(out[0]);
  need(op, 's', s, 1, 'scalar');
  need(op, 'g', g, N, `N=${N}`);
  if (s[0] === 0) return; // a zero gradient has no direction to keep; leave it unchanged
  const factor = Math.min(1, clipNorm / Math.sqrt(s[0]));
  for (let n = 0; n < N; n++) g[n] *= factor;
});

defineKernel('fill', { inputs: [], outputs: [['x', 'f32']] }, (_inp, out, a) => {
  // x is (N)
  const op = 'fill';
  const N = dim(op, a, 'N');
  const value = num(op, a, 'value');
  const x = f64(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  for (let n = 0; n < N; n++) x[n] = value;
});

defineKernel('scale', { inputs: [], outputs: [['x', 'f32']] }, (_inp, out, a) => {
  // x is (N), scaled in place
  const op = 'scale';
  const N = dim(op, a, 'N');
  const factor = num(op, a, 'factor');
  const x = f64(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  for (let n = 0; n < N; n++) x[n] *= factor;
});

defineKernel('axpy', { inputs: [['x', 'f32']], outputs: [['y', 'f32']] }, (inp, out, a) => {
  // x is (N); y is (N), updated in place
  const op = 'axpy';
  const N = dim(op, a, 'N');
  const alpha = num(op, a, 'alpha');
  const x = f64(inp[0]), y = f64(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  need(op, 'y', y, N, `N=${N}`);
  for (let n = 0; n < N; n++) y[n] += alpha * x[n];
});

defineKernel('copy', { inputs: [['x', 'f32']], outputs: [['y', 'f32']] }, (inp, out, a) => {
  // x is (N); y is (N)
  const op = 'copy';
  const N = dim(op, a, 'N');
  const x = f64(inp[0]), y = f64(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  need(op, 'y', y, N, `N=${N}`);
  for (let n = 0; n < N; n++) y[n] = x[n];
});

// Note [Replica hash] (cpp/cpu/kernels_replica.cc): h = Σ splitmix64((i << 32) | bits(f32(x[i]))) mod 2^64.
const M64 = (1n << 64n) - 1n;
function splitmix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

defineKernel('hash_bits', { inputs: [['x', 'f32']], outputs: [['h', 'i32']] }, (inp, out, a) => {
  // x is (N); h is (2): the low and high 32 bits
  const op = 'hash_bits';
  const N = dim(op, a, 'N');
  const x = f64(inp[0]), h = i32(out[0]);
  need(op, 'x', x, N, `N=${N}`);
  need(op, 'h', h, 2, '(2)');
  const bits = new Uint32Array(new Float32Array(1).buffer);
  const f = new Float32Array(bits.buffer);
  let sum = 0n;
  for (let i = 0; i < N; i++) {
    f[0] = x[i]!;
    sum = (sum + splitmix64((BigInt(i) << 32n) | BigInt(bits[0]!))) & M64;
  }
  h[0] = Number(BigInt.asIntN(32, sum));
  h[1] = Number(BigInt.asIntN(32, sum >> 32n));
});
