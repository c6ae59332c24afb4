// Optimizers, in place on weights and slots (float64 reference).
import { fail, dim, num, flag, need, f64, defineKernel, needHyper } from './define.js';

// Optimizers (in place on weights and slots)

defineKernel('sgd_update', { inputs: [['g', 'f32'], ['hyper', 'f32']], outputs: [['w', 'f32']] }, (inp, out, a) => {
  // g is (N); w is (N), updated in place
  const op = 'sgd_update';
  const N = dim(op, a, 'N');
  const g = f64(inp[0]), hyper = f64(inp[1]), w = f64(out[0]);
  need(op, 'g', g, N, `N=${N}`);
  needHyper(op, hyper, 0);
  need(op, 'w', w, N, `N=${N}`);
  const lr = hyper[0];
  for (let n = 0; n < N; n++) w[n] -= lr * g[n];
});

defineKernel('momentum_update', {
  inputs: [['g', 'f32'], ['hyper', 'f32']],
  outputs: [['w', 'f32'], ['v', 'f32']],
}, (inp, out, a) => {
  // g is (N); w is (N), v is (N), updated in place
  const op = 'momentum_update';
  const N = dim(op, a, 'N');
  const momentum = num(op, a, 'momentum');
  const nesterov = flag(op, a, 'nesterov');
  const g = f64(inp[0]), hyper = f64(inp[1]), w = f64(out[0]), v = f64(out[1]);
  need(op, 'g', g, N, `N=${N}`);
  needHyper(op, hyper, 0);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'v', v, N, `N=${N}`);
  const lr = hyper[0];
  for (let n = 0; n < N; n++) {
    v[n] = momentum * v[n] + g[n];
    // Nesterov uses the freshly updated v, as TF's MomentumOptimizer does.
    w[n] -= nesterov ? lr * (g[n] + momentum * v[n]) : lr * v[n];
  }
});

defineKernel('adam_update', {
  inputs: [['g', 'f32'], ['hyper', 'f32']],
  outputs: [['w', 'f32'], ['m', 'f32'], ['v', 'f32']],
}, (inp, out, a) => {
  // g is (N); w is (N), m is (N), v is (N), updated in place
  const op = 'adam_update';
  const N = dim(op, a, 'N');
  const beta1 = num(op, a, 'beta1'), beta2 = num(op, a, 'beta2'), epsilon = num(op, a, 'epsilon');
  const g = f64(inp[0]), hyper = f64(inp[1]), w = f64(out[0]), m = f64(out[1]), v = f64(out[2]);
  need(op, 'g', g, N, `N=${N}`);
  needHyper(op, hyper, 1);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'm', m, N, `N=${N}`);
  need(op, 'v', v, N, `N=${N}`);
  const lr = hyper[0], t = hyper[1];
  // At t = 0 the bias correction divides by 1 − beta1⁰ = 0.
  if (!(t >= 1)) fail(op, `hyper[1] (step t) must be >= 1, got ${t}`);
  const lrT = (lr * Math.sqrt(1 - Math.pow(beta2, t))) / (1 - Math.pow(beta1, t));
  for (let n = 0; n < N; n++) {
    m[n] = beta1 * m[n] + (1 - beta1) * g[n];
    v[n] = beta2 * v[n] + (1 - beta2) * g[n] * g[n];
    w[n] -= (lrT * m[n]) / (Math.sqrt(v[n]) + epsilon);
  }
});

defineKernel('ema_update', { inputs: [['w', 'f32']], outputs: [['shadow', 'f32']] }, (inp, out, a) => {
  // w is (N); shadow is (N), updated in place
  const op = 'ema_update';
  const N = dim(op, a, 'N');
  const decay = num(op, a, 'decay');
  const w = f64(inp[0]), shadow = f64(out[0]);
  need(op, 'w', w, N, `N=${N}`);
  need(op, 'shadow', shadow, N, `N=${N}`);
  for (let n = 0; n < N; n++) shadow[n] = decay * shadow[n] + (1 - decay) * w[n];
});
