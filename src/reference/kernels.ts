// Float64 reference of every kernel in docs/kernels.md: slow, plain loops, the yardstick for the cpu/cuda kernels.

/** f32 buffers are Float64Array here; i32 are Int32Array; u8 are Uint8Array. */
export type RefTensor = Float64Array | Int32Array | Uint8Array;
export type RefKernel = (inputs: RefTensor[], outputs: RefTensor[], attrs: Record<string, number>) => void;

export type RefDType = 'f32' | 'i32' | 'u8';

/** Argument names and dtypes of a kernel, in order; `optionalOutputs` trailing outputs may be left out. */
export interface RefSignature {
  readonly inputs: ReadonlyArray<readonly [string, RefDType]>;
  readonly outputs: ReadonlyArray<readonly [string, RefDType]>;
  readonly optionalOutputs?: number;
}

const DEVICE = 'ref';

// ---------------------------------------------------------------------------------------------------------------
// Checks. Every kernel runs all of its checks before it writes anything, so a failing op leaves outputs unchanged.

function fail(op: string, msg: string): never {
  throw new Error(`${op} (${DEVICE}): ${msg}`);
}

function dtypeOf(t: RefTensor): RefDType {
  if (t instanceof Float64Array) return 'f32';
  if (t instanceof Int32Array) return 'i32';
  return 'u8';
}

/** A shape attribute: required, a non-negative integer. */
function dim(op: string, attrs: Record<string, number>, name: string): number {
  const v = attrs[name];
  if (v === undefined) fail(op, `missing attribute ${name}`);
  if (!Number.isInteger(v) || v < 0) fail(op, `attribute ${name} must be a non-negative integer, got ${v}`);
  return v;
}

/** A numeric attribute: required unless a default is given, finite. */
function num(op: string, attrs: Record<string, number>, name: string, dflt?: number): number {
  const v = attrs[name] ?? dflt;
  if (v === undefined) fail(op, `missing attribute ${name}`);
  if (!Number.isFinite(v)) fail(op, `attribute ${name} must be finite, got ${v}`);
  return v;
}

/** A 0/1 flag attribute. */
function flag(op: string, attrs: Record<string, number>, name: string): boolean {
  const v = attrs[name] ?? 0;
  if (v !== 0 && v !== 1) fail(op, `attribute ${name} must be 0 or 1, got ${v}`);
  return v === 1;
}

function need(op: string, arg: string, t: RefTensor, n: number, shape: string): void {
  if (t.length < n) fail(op, `${arg} has ${t.length} elements, needs ${n} (${shape})`);
}

/** Index checks name the position and the value, e.g. "label 7 at row 2 is outside [0, 5)". */
function checkRange(op: string, what: string, at: string, idx: Int32Array, count: number, hi: number): void {
  for (let b = 0; b < count; b++) {
    const v = idx[b];
    if (v < 0 || v >= hi) fail(op, `${what} ${v} at ${at} ${b} is outside [0, ${hi})`);
  }
}

// Narrowing accessors: the wrapper in `defineKernel` has already checked presence and dtype, these only give the
// compiler the concrete array type.
function f64(t: RefTensor | undefined): Float64Array {
  if (!(t instanceof Float64Array)) throw new Error('reference kernel: expected Float64Array');
  return t;
}
function i32(t: RefTensor | undefined): Int32Array {
  if (!(t instanceof Int32Array)) throw new Error('reference kernel: expected Int32Array');
  return t;
}
function u8(t: RefTensor | undefined): Uint8Array {
  if (!(t instanceof Uint8Array)) throw new Error('reference kernel: expected Uint8Array');
  return t;
}

const signatures: Record<string, RefSignature> = {};
const kernels: Record<string, RefKernel> = {};

/** Registers a kernel behind a wrapper that checks argument counts and dtypes against its signature. */
function defineKernel(name: string, sig: RefSignature, body: RefKernel): void {
  const required = sig.outputs.length - (sig.optionalOutputs ?? 0);
  signatures[name] = sig;
  kernels[name] = (inputs, outputs, attrs) => {
    if (inputs.length !== sig.inputs.length) {
      fail(name, `takes ${sig.inputs.length} inputs, got ${inputs.length}`);
    }
    if (outputs.length < required || outputs.length > sig.outputs.length) {
      const want = required === sig.outputs.length ? `${required}` : `${required} to ${sig.outputs.length}`;
      fail(name, `takes ${want} outputs, got ${outputs.length}`);
    }
    const check = (t: RefTensor, [arg, dt]: readonly [string, RefDType]): void => {
      if (dtypeOf(t) !== dt) fail(name, `${arg} must be ${dt}, got ${dtypeOf(t)}`);
    };
    inputs.forEach((t, k) => check(t, sig.inputs[k]));
    outputs.forEach((t, k) => check(t, sig.outputs[k]));
    body(inputs, outputs, attrs);
  };
}

/** hyper must reach the highest slot the kernel reads. */
function needHyper(op: string, hyper: Float64Array, slot: number): void {
  need(op, 'hyper', hyper, slot + 1, `reads hyper[${slot}]`);
}

// ---------------------------------------------------------------------------------------------------------------
// Layers

defineKernel('dense_forward', { inputs: [['x', 'f32'], ['W', 'f32'], ['b', 'f32']], outputs: [['y', 'f32']] },
  (inp, out, a) => {
    // x is (B,I), W is (I,O), b is (O); y is (B,O)
    const op = 'dense_forward';
    const B = dim(op, a, 'B'), I = dim(op, a, 'I'), O = dim(op, a, 'O');
    const x = f64(inp[0]), W = f64(inp[1]), bias = f64(inp[2]), y = f64(out[0]);
    need(op, 'x', x, B * I, `B=${B}, I=${I}`);
    need(op, 'W', W, I * O, `I=${I}, O=${O}`);
    need(op, 'b', bias, O, `O=${O}`);
    need(op, 'y', y, B * O, `B=${B}, O=${O}`);
    for (let r = 0; r < B; r++) {
      for (let o = 0; o < O; o++) {
        let s = bias[o];
        for (let i = 0; i < I; i++) s += x[r * I + i] * W[i * O + o];
        y[r * O + o] = s;
      }
    }
  });

defineKernel('dense_backward', {
  inputs: [['x', 'f32'], ['W', 'f32'], ['dy', 'f32']],
  outputs: [['dW', 'f32'], ['db', 'f32'], ['dx', 'f32']],
  optionalOutputs: 1,
}, (inp, out, a) => {
  // x is (B,I), W is (I,O), dy is (B,O); dW is (I,O), db is (O), optional dx is (B,I)
  const op = 'dense_backward';
  const B = dim(op, a, 'B'), I = dim(op, a, 'I'), O = dim(op, a, 'O');
  const accumulate = flag(op, a, 'accumulate');
  const x = f64(inp[0]), W = f64(inp[1]), dy = f64(inp[2]), dW = f64(out[0]), db = f64(out[1]);
  const dx = out.length > 2 ? f64(out[2]) : undefined;
  need(op, 'x', x, B * I, `B=${B}, I=${I}`);
  need(op, 'W', W, I * O, `I=${I}, O=${O}`);
  need(op, 'dy', dy, B * O, `B=${B}, O=${O}`);
  need(op, 'dW', dW, I * O, `I=${I}, O=${O}`);
  need(op, 'db', db, O, `O=${O}`);
  if (dx) need(op, 'dx', dx, B * I, `B=${B}, I=${I}`);
  for (let i = 0; i < I; i++) {
    for (let o = 0; o < O; o++) {
      let s = 0;
      for (let r = 0; r < B; r++) s += x[r * I + i] * dy[r * O + o];
      dW[i * O + o] = accumulate ? dW[i * O + o] + s : s;
    }
  }
  for (let o = 0; o < O; o++) {
    let s = 0;
    for (let r = 0; r < B; r++) s += dy[r * O + o];
    db[o] = accumulate ? db[o] + s : s;
  }
  if (dx) {
    for (let r = 0; r < B; r++) {
      for (let i = 0; i < I; i++) {
        let s = 0;
        for (let o = 0; o < O; o++) s += dy[r * O + o] * W[i * O + o];
        dx[r * I + i] = s;
      }
    }
  }
});

/** Shared shape of the elementwise activations: one f32 input and one f32 output of N elements. */
function defineUnary(name: string, f: (x: number) => number): void {
  defineKernel(name, { inputs: [['x', 'f32']], outputs: [['y', 'f32']] }, (inp, out, a) => {
    // x is (N); y is (N)
    const N = dim(name, a, 'N');
    const x = f64(inp[0]), y = f64(out[0]);
    need(name, 'x', x, N, `N=${N}`);
    need(name, 'y', y, N, `N=${N}`);
    for (let n = 0; n < N; n++) y[n] = f(x[n]);
  });
}

/** Activation backwards take the forward output y and dy; dx may alias dy (each element reads before it writes). */
function defineUnaryBackward(name: string, f: (y: number, dy: number) => number): void {
  defineKernel(name, { inputs: [['y', 'f32'], ['dy', 'f32']], outputs: [['dx', 'f32']] }, (inp, out, a) => {
    // y is (N), dy is (N); dx is (N)
    const N = dim(name, a, 'N');
    const y = f64(inp[0]), dy = f64(inp[1]), dx = f64(out[0]);
    need(name, 'y', y, N, `N=${N}`);
    need(name, 'dy', dy, N, `N=${N}`);
    need(name, 'dx', dx, N, `N=${N}`);
    for (let n = 0; n < N; n++) dx[n] = f(y[n], dy[n]);
  });
}

defineUnary('relu_forward', (x) => (x > 0 ? x : 0));
defineUnaryBackward('relu_backward', (y, dy) => (y > 0 ? dy : 0));

// Stable for large |x|: exp is only taken of a non-positive number, so it never overflows.
defineUnary('sigmoid_forward', (x) => {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
});
defineUnaryBackward('sigmoid_backward', (y, dy) => dy * y * (1 - y));

defineUnary('tanh_forward', (x) => Math.tanh(x));
defineUnaryBackward('tanh_backward', (y, dy) => dy * (1 - y * y));

defineKernel('softmax_xent_forward', {
  inputs: [['logits', 'f32'], ['labels', 'i32'], ['hyper', 'f32']],
  outputs: [['loss', 'f32'], ['probs', 'f32']],
}, (inp, out, a) => {
  // logits is (B,C), labels is (B); loss is (1), probs is (B,C)
  const op = 'softmax_xent_forward';
  const B = dim(op, a, 'B'), C = dim(op, a, 'C');
  const logits = f64(inp[0]), labels = i32(inp[1]), hyper = f64(inp[2]), loss = f64(out[0]), probs = f64(out[1]);
  need(op, 'logits', logits, B * C, `B=${B}, C=${C}`);
  need(op, 'labels', labels, B, `B=${B}`);
  needHyper(op, hyper, 2);
  need(op, 'loss', loss, 1, 'scalar');
  need(op, 'probs', probs, B * C, `B=${B}, C=${C}`);
  checkRange(op, 'label', 'row', labels, B, C);
  let total = 0;
  for (let r = 0; r < B; r++) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[r * C + c]);
    let sum = 0;
    for (let c = 0; c < C; c++) sum += Math.exp(logits[r * C + c] - m);
    for (let c = 0; c < C; c++) probs[r * C + c] = Math.exp(logits[r * C + c] - m) / sum;
    // −log p[label] = logsumexp − logit[label], which stays finite where p underflows to 0.
    total += m + Math.log(sum) - logits[r * C + labels[r]];
  }
  loss[0] = hyper[2] * total;
});

defineKernel('softmax_xent_backward', {
  inputs: [['probs', 'f32'], ['labels', 'i32'], ['hyper', 'f32']],
  outputs: [['dlogits', 'f32']],
}, (inp, out, a) => {
  // probs is (B,C), labels is (B); dlogits is (B,C)
  const op = 'softmax_xent_backward';
  const B = dim(op, a, 'B'), C = dim(op, a, 'C');
  const probs = f64(inp[0]), labels = i32(inp[1]), hyper = f64(inp[2]), dlogits = f64(out[0]);
  need(op, 'probs', probs, B * C, `B=${B}, C=${C}`);
  need(op, 'labels', labels, B, `B=${B}`);
  needHyper(op, hyper, 2);
  need(op, 'dlogits', dlogits, B * C, `B=${B}, C=${C}`);
  checkRange(op, 'label', 'row', labels, B, C);
  const w = hyper[2];
  for (let r = 0; r < B; r++) {
    for (let c = 0; c < C; c++) {
      const onehot = c === labels[r] ? 1 : 0;
      dlogits[r * C + c] = w * (probs[r * C + c] - onehot);
    }
  }
});

defineKernel('mean_forward', { inputs: [['x', 'f32'], ['hyper', 'f32']], outputs: [['loss', 'f32']] },
  (inp, out, a) => {
    // x is (B,C); loss is (1)
    const op = 'mean_forward';
    const B = dim(op, a, 'B'), C = dim(op, a, 'C');
    const x = f64(inp[0]), hyper = f64(inp[1]), loss = f64(out[0]);
    need(op, 'x', x, B * C, `B=${B}, C=${C}`);
    needHyper(op, hyper, 2);
    need(op, 'loss', loss, 1, 'scalar');
    let total = 0;
    for (let r = 0; r < B; r++) {
      let row = 0;
      for (let c = 0; c < C; c++) row += x[r * C + c];
      total += row / C;
    }
    loss[0] = hyper[2] * total;
  });

defineKernel('mean_backward', { inputs: [['hyper', 'f32']], outputs: [['dx', 'f32']] }, (inp, out, a) => {
  // dx is (B,C)
  const op = 'mean_backward';
  const B = dim(op, a, 'B'), C = dim(op, a, 'C');
  const hyper = f64(inp[0]), dx = f64(out[0]);
  needHyper(op, hyper, 2);
  need(op, 'dx', dx, B * C, `B=${B}, C=${C}`);
  const g = hyper[2] / C;
  for (let k = 0; k < B * C; k++) dx[k] = g;
});

defineKernel('accuracy_count', { inputs: [['logits', 'f32'], ['labels', 'i32']], outputs: [['count', 'f32']] },
  (inp, out, a) => {
    // logits is (B,C), labels is (B); count is (1)
    const op = 'accuracy_count';
    const B = dim(op, a, 'B'), C = dim(op, a, 'C');
    const logits = f64(inp[0]), labels = i32(inp[1]), count = f64(out[0]);
    need(op, 'logits', logits, B * C, `B=${B}, C=${C}`);
    need(op, 'labels', labels, B, `B=${B}`);
    need(op, 'count', count, 1, 'scalar');
    checkRange(op, 'label', 'row', labels, B, C);
    let n = 0;
    for (let r = 0; r < B; r++) {
      let best = 0;
      // Strict '>' keeps the first max on ties.
      for (let c = 1; c < C; c++) if (logits[r * C + c] > logits[r * C + best]) best = c;
      if (best === labels[r]) n++;
    }
    count[0] = n;
  });

// ---------------------------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------------------------
// Input

defineKernel('gather_rows_u8', {
  inputs: [['src', 'u8'], ['idx', 'i32']],
  outputs: [['y', 'f32']],
}, (inp, out, a) => {
  // src is (R,D), idx is (B); y is (B,D)
  const op = 'gather_rows_u8';
  const B = dim(op, a, 'B'), D = dim(op, a, 'D'), R = dim(op, a, 'R');
  const scale = num(op, a, 'scale');
  const src = u8(inp[0]), idx = i32(inp[1]), y = f64(out[0]);
  need(op, 'src', src, R * D, `R=${R}, D=${D}`);
  need(op, 'idx', idx, B, `B=${B}`);
  need(op, 'y', y, B * D, `B=${B}, D=${D}`);
  checkRange(op, 'index', 'b', idx, B, R);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) y[b * D + d] = src[idx[b] * D + d] * scale;
  }
});

defineKernel('gather_rows_f32', {
  inputs: [['src', 'f32'], ['idx', 'i32']],
  outputs: [['y', 'f32']],
}, (inp, out, a) => {
  // src is (R,D), idx is (B); y is (B,D)
  const op = 'gather_rows_f32';
  const B = dim(op, a, 'B'), D = dim(op, a, 'D'), R = dim(op, a, 'R');
  const src = f64(inp[0]), idx = i32(inp[1]), y = f64(out[0]);
  need(op, 'src', src, R * D, `R=${R}, D=${D}`);
  need(op, 'idx', idx, B, `B=${B}`);
  need(op, 'y', y, B * D, `B=${B}, D=${D}`);
  checkRange(op, 'index', 'b', idx, B, R);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) y[b * D + d] = src[idx[b] * D + d];
  }
});

defineKernel('gather_labels_u8', {
  inputs: [['src', 'u8'], ['idx', 'i32']],
  outputs: [['y', 'i32']],
}, (inp, out, a) => {
  // src is (R), idx is (B); y is (B)
  const op = 'gather_labels_u8';
  const B = dim(op, a, 'B'), R = dim(op, a, 'R');
  const src = u8(inp[0]), idx = i32(inp[1]), y = i32(out[0]);
  need(op, 'src', src, R, `R=${R}`);
  need(op, 'idx', idx, B, `B=${B}`);
  need(op, 'y', y, B, `B=${B}`);
  checkRange(op, 'index', 'b', idx, B, R);
  for (let b = 0; b < B; b++) y[b] = src[idx[b]];
});

export const referenceKernels: Readonly<Record<string, RefKernel>> = Object.freeze(kernels);

/** Argument names and dtypes per kernel, so a backend can validate a program when it is compiled. */
export const referenceSignatures: Readonly<Record<string, RefSignature>> = Object.freeze(signatures);
