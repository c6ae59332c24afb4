// The fused per-parameter tail (float64 reference): Note [Fused parameter tail] in src/model/passes.ts. Each kernel is
// its unfused sequence of reference kernels, run on the same buffers, so the two agree by construction.
import { fail, dim, num, flag, need, f64, defineKernel, needHyper, kernels, type RefTensor } from './define.js';

defineKernel('l2_grad_norm', {
  inputs: [['w', 'f32']],
  outputs: [['g', 'f32'], ['s', 'f32'], ['loss', 'f32'], ['local', 'f32']],
  optionalOutputs: 1,
}, (inp, out, a) => {
  // w is (N); g is (N), updated in place; s, loss and local (optional) are (1), accumulated into
  const op = 'l2_grad_norm';
  const N = dim(op, a, 'N');
  const lambda = num(op, a, 'lambda');
  const w = f64(inp[0]), g = f64(out[0]), s = f64(out[1]), loss = f64(out[2]);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'g', g, N, `N=${N}`);
  need(op, 's', s, 1, 'scalar');
  need(op, 'loss', loss, 1, 'scalar');
  if (out[3] !== undefined) {
    need(op, 'local', f64(out[3]), 1, 'scalar');
    kernels.sum_squares!([g], [out[3]], { N });  // the incoming g's norm, before the L2 term
  }
  kernels.l2_backward!([w], [g], { N, lambda });
  kernels.sum_squares!([g], [s], { N });
  kernels.l2_loss!([w], [loss], { N, lambda });
});

defineKernel('add_grad_norm', {
  inputs: [['w', 'f32'], ['a', 'f32'], ['b', 'f32']],
  outputs: [['g', 'f32'], ['s', 'f32'], ['loss', 'f32']],
}, (inp, out, attrs) => {
  // w, a, b are (N); g = a + b (N), then l2_grad_norm on it (lambda 0: sum_squares only)
  const op = 'add_grad_norm';
  const N = dim(op, attrs, 'N');
  const lambda = num(op, attrs, 'lambda');
  const a = f64(inp[1]), b = f64(inp[2]), g = f64(out[0]);
  need(op, 'a', a, N, `N=${N}`);
  need(op, 'b', b, N, `N=${N}`);
  need(op, 'g', g, N, `N=${N}`);
  for (let i = 0; i < N; i++) g[i] = a[i]! + b[i]!;
  if (lambda > 0) kernels.l2_grad_norm!([inp[0]!], out, { N, lambda });
  else kernels.sum_squares!([out[0]!], [out[1]!], { N });
});

defineKernel('dense_grad_norm', {
  inputs: [['w', 'f32'], ['x0', 'f32'], ['dy0', 'f32'], ['n0', 'f32'], ['x1', 'f32'], ['dy1', 'f32'], ['n1', 'f32']],
  outputs: [['g', 'f32'], ['s', 'f32'], ['loss', 'f32']],
}, (inp, out, attrs) => {
  // g = elements [at, at+N) of x0ᵀ·dy0 + x1ᵀ·dy1 (I,O) over each one's first n rows (n0, n1 in [0, B], read now);
  // then add_grad_norm's L2 term and sums on it
  const op = 'dense_grad_norm';
  const N = dim(op, attrs, 'N'), B = dim(op, attrs, 'B'), I = dim(op, attrs, 'I'), O = dim(op, attrs, 'O'), at = dim(op, attrs, 'at');
  const lambda = num(op, attrs, 'lambda');
  if (at + N > I * O) fail(op, `elements [at, at+N) = [${at}, ${at + N}) must lie in the (I,O) = (${I},${O}) weight gradient`);
  const g = f64(out[0]);
  need(op, 'g', g, N, `N=${N}`);
  const rows = (k: number, name: string) => {
    const n = f64(inp[k])[0]!;
    if (!(Number.isInteger(n) && n >= 0 && n <= B)) fail(op, `${name} = ${n} rows; expected an integer in [0, B=${B}]`);
    return n;
  };
  const towers = [[1, 2, rows(3, 'n0')], [4, 5, rows(6, 'n1')]] as const;
  for (const [xi, di] of towers) {
    need(op, xi === 1 ? 'x0' : 'x1', f64(inp[xi]), B * I, `B=${B}, I=${I}`);
    need(op, di === 2 ? 'dy0' : 'dy1', f64(inp[di]), B * O, `B=${B}, O=${O}`);
  }
  for (let e = 0; e < N; e++) {
    const i = Math.floor((at + e) / O), o = (at + e) % O;
    let sum = 0;
    for (const [xi, di, n] of towers) {
      const x = f64(inp[xi]), dy = f64(inp[di]);
      let t = 0;
      for (let r = 0; r < n; r++) t += x[r * I + i]! * dy[r * O + o]!;
      sum += t;
    }
    g[e] = sum;
  }
  if (lambda > 0) kernels.l2_grad_norm!([inp[0]!], out, { N, lambda });
  else kernels.sum_squares!([out[0]!], [out[1]!], { N });
});

/**
 * A fused update: clip g by the global norm s (clipNorm 0: not at all) as clip_by_norm does, run `update` on
 * (g, hyper) -> (w, slots...), then ema_update the shadow from the new w when there is one.
 */
function fusedUpdate(name: string, update: string, slots: string[], attrs: (a: Record<string, number>) => Record<string, number>): void {
  defineKernel(name, {
    inputs: [['s', 'f32'], ['hyper', 'f32']],
    outputs: [['g', 'f32'], ['w', 'f32'], ...slots.map((k) => [k, 'f32'] as const), ['shadow', 'f32']],
    optionalOutputs: 1,
  }, (inp, out, a) => {
    const N = dim(name, a, 'N');
    const clipNorm = num(name, a, 'clipNorm');
    const decay = num(name, a, 'decay');
    const s = f64(inp[0]), hyper = f64(inp[1]);
    const [g, w, ...rest] = out.map((t) => f64(t));
    const state = rest.slice(0, slots.length);
    const shadow: RefTensor | undefined = rest[slots.length];
    need(name, 's', s, 1, 'scalar');
    needHyper(name, hyper, 1);
    [g!, w!, ...state, ...(shadow ? [shadow] : [])].forEach((t, k) => need(name, ['g', 'w', ...slots, 'shadow'][k]!, t, N, `N=${N}`));
    if (!(clipNorm >= 0)) fail(name, `attribute clipNorm must be >= 0 (0: no clipping), got ${clipNorm}`);
    if (shadow && !(decay > 0 && decay < 1)) fail(name, `attribute decay must be in (0, 1) with a shadow output, got ${decay}`);
    if (clipNorm > 0) kernels.clip_by_norm!([s], [g!], { N, clipNorm });
    kernels[update]!([g!, hyper], [w!, ...state], { N, ...attrs(a) });
    if (shadow) kernels.ema_update!([w!], [shadow], { N, decay });
  });
}

fusedUpdate('fused_sgd_update', 'sgd_update', [], () => ({}));
fusedUpdate('fused_momentum_update', 'momentum_update', ['v'], (a) => ({
  momentum: num('fused_momentum_update', a, 'momentum'),
  nesterov: flag('fused_momentum_update', a, 'nesterov') ? 1 : 0,
}));
fusedUpdate('fused_adam_update', 'adam_update', ['m', 'v'], (a) => ({
  beta1: num('fused_adam_update', a, 'beta1'),
  beta2: num('fused_adam_update', a, 'beta2'),
  epsilon: num('fused_adam_update', a, 'epsilon'),
}));
