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

defineKernel('crop_flip_standardize_u8', {
  inputs: [['src', 'u8'], ['idx', 'i32'], ['params', 'i32']],
  outputs: [['y', 'f32']],
}, (inp, out, a) => {
  // src is (R,H,W,C), idx is (B), params is (B,3) [dy, dx, flip]; y is (B,OH,OW,C):
  // y[b] = (crop − mean) / max(std, 1/sqrt(OH·OW·C)) of the (flipped) crop of src[idx[b]] at (dy, dx)
  const op = 'crop_flip_standardize_u8';
  const B = dim(op, a, 'B'), R = dim(op, a, 'R'), H = dim(op, a, 'H'), W = dim(op, a, 'W'), C = dim(op, a, 'C');
  const OH = dim(op, a, 'OH'), OW = dim(op, a, 'OW');
  if (!(OH >= 1 && OW >= 1 && OH <= H && OW <= W)) fail(op, `crop OH=${OH} OW=${OW} must be at least 1x1 and fit the image H=${H} W=${W}`);
  const img = H * W * C, N = OH * OW * C;
  const src = u8(inp[0]), idx = i32(inp[1]), prm = i32(inp[2]), y = f64(out[0]);
  need(op, 'src', src, R * img, `R=${R}, H=${H}, W=${W}, C=${C}`);
  need(op, 'idx', idx, B, `B=${B}`);
  need(op, 'params', prm, 3 * B, `B=${B}, 3`);
  need(op, 'y', y, B * N, `B=${B}, OH=${OH}, OW=${OW}, C=${C}`);
  checkRange(op, 'index', 'b', idx, B, R);
  for (let b = 0; b < B; b++) {
    const dy = prm[3 * b]!, dx = prm[3 * b + 1]!, flip = prm[3 * b + 2]!;
    if (!(dy >= 0 && dy <= H - OH && dx >= 0 && dx <= W - OW && (flip === 0 || flip === 1)))
      fail(op, `params at b=${b} are [dy=${dy}, dx=${dx}, flip=${flip}], expected dy in [0, ${H - OH}], dx in [0, ${W - OW}], flip 0 or 1`);
  }
  for (let b = 0; b < B; b++) {
    const dy = prm[3 * b]!, dx = prm[3 * b + 1]!, flip = prm[3 * b + 2]!;
    const base = idx[b]! * img;
    const v = (i: number, j: number, c: number): number => src[base + ((dy + i) * W + dx + j) * C + c]!;
    let sum = 0;
    for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) for (let c = 0; c < C; c++) sum += v(i, j, c);
    const mean = sum / N;
    let ss = 0;
    for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) for (let c = 0; c < C; c++) ss += (v(i, j, c) - mean) ** 2;
    const sd = Math.max(Math.sqrt(ss / N), 1 / Math.sqrt(N));
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++)
        for (let c = 0; c < C; c++) y[b * N + (i * OW + j) * C + c] = (v(i, flip ? OW - 1 - j : j, c) - mean) / sd;
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

// ---------------------------------------------------------------------------------------------------------------
// Convolution and pooling (NHWC)

interface ConvGeom {
  B: number; H: number; W: number; C: number; KH: number; KW: number; SH: number; SW: number;
  OH: number; OW: number; padTop: number; padLeft: number;
}

/** One spatial dimension: VALID out = ceil((in − k + 1)/s); SAME (TF) out = ceil(in/s), pad before = ⌊total/2⌋. */
function spatialOut(op: string, which: string, inp: number, k: number, s: number, same: boolean): [number, number] {
  if (same) {
    const out = Math.ceil(inp / s);
    const total = Math.max((out - 1) * s + k - inp, 0);
    return [out, out > 0 ? Math.floor(total / 2) : 0];
  }
  if (inp < k) fail(op, `VALID padding needs ${which} >= K${which}, got ${which}=${inp} K${which}=${k}`);
  return [Math.floor((inp - k) / s) + 1, 0];
}

/** Reads B,H,W,C,KH,KW,SH,SW,padding,OH,OW and checks OH/OW against the padding rule. */
function convGeom(op: string, a: Record<string, number>): ConvGeom {
  const B = dim(op, a, 'B'), H = dim(op, a, 'H'), W = dim(op, a, 'W'), C = dim(op, a, 'C');
  const KH = dim(op, a, 'KH'), KW = dim(op, a, 'KW'), SH = dim(op, a, 'SH'), SW = dim(op, a, 'SW');
  const OH = dim(op, a, 'OH'), OW = dim(op, a, 'OW');
  const padding = num(op, a, 'padding');
  if (padding !== 0 && padding !== 1) fail(op, `attribute padding must be 0 (VALID) or 1 (SAME), got ${padding}`);
  if (KH < 1 || KW < 1) fail(op, `window KH=${KH} KW=${KW} must be at least 1x1`);
  if (SH < 1 || SW < 1) fail(op, `strides SH=${SH} SW=${SW} must be at least 1`);
  const same = padding === 1;
  const [oh, padTop] = spatialOut(op, 'H', H, KH, SH, same);
  const [ow, padLeft] = spatialOut(op, 'W', W, KW, SW, same);
  const rule = same ? 'SAME: ceil(in/stride)' : 'VALID: (in - k)/stride + 1';
  if (OH !== oh) fail(op, `OH=${OH} does not match padding ${rule} = ${oh}`);
  if (OW !== ow) fail(op, `OW=${OW} does not match padding ${rule} = ${ow}`);
  return { B, H, W, C, KH, KW, SH, SW, OH, OW, padTop, padLeft };
}

const geomShape = (g: ConvGeom): string => `B=${g.B}, H=${g.H}, W=${g.W}, C=${g.C}`;
const outShape = (g: ConvGeom, ch: number): string => `B=${g.B}, OH=${g.OH}, OW=${g.OW}, C=${ch}`;

defineKernel('conv2d_forward', { inputs: [['x', 'f32'], ['w', 'f32'], ['b', 'f32']], outputs: [['y', 'f32']] },
  (inp, out, a) => {
    // x is (B,H,W,C), w is (KH,KW,C,K), b is (K); y is (B,OH,OW,K)
    const op = 'conv2d_forward';
    const g = convGeom(op, a);
    const K = dim(op, a, 'K');
    const x = f64(inp[0]), w = f64(inp[1]), bias = f64(inp[2]), y = f64(out[0]);
    need(op, 'x', x, g.B * g.H * g.W * g.C, geomShape(g));
    need(op, 'w', w, g.KH * g.KW * g.C * K, `KH=${g.KH}, KW=${g.KW}, C=${g.C}, K=${K}`);
    need(op, 'b', bias, K, `K=${K}`);
    need(op, 'y', y, g.B * g.OH * g.OW * K, outShape(g, K));
    for (let b = 0; b < g.B; b++) {
      for (let oh = 0; oh < g.OH; oh++) {
        for (let ow = 0; ow < g.OW; ow++) {
          for (let k = 0; k < K; k++) {
            let s = bias[k];
            for (let kh = 0; kh < g.KH; kh++) {
              const ih = oh * g.SH - g.padTop + kh;
              if (ih < 0 || ih >= g.H) continue;
              for (let kw = 0; kw < g.KW; kw++) {
                const iw = ow * g.SW - g.padLeft + kw;
                if (iw < 0 || iw >= g.W) continue;
                for (let c = 0; c < g.C; c++) {
                  s += x[((b * g.H + ih) * g.W + iw) * g.C + c] * w[((kh * g.KW + kw) * g.C + c) * K + k];
                }
              }
            }
            y[((b * g.OH + oh) * g.OW + ow) * K + k] = s;
          }
        }
      }
    }
  });

defineKernel('conv2d_backward', {
  inputs: [['x', 'f32'], ['w', 'f32'], ['dy', 'f32']],
  outputs: [['dw', 'f32'], ['db', 'f32'], ['dx', 'f32']],
  optionalOutputs: 1,
}, (inp, out, a) => {
  // x is (B,H,W,C), w is (KH,KW,C,K), dy is (B,OH,OW,K); dw is (KH,KW,C,K), db is (K), optional dx is (B,H,W,C)
  const op = 'conv2d_backward';
  const g = convGeom(op, a);
  const K = dim(op, a, 'K');
  const accumulate = flag(op, a, 'accumulate');
  const x = f64(inp[0]), w = f64(inp[1]), dy = f64(inp[2]), dw = f64(out[0]), db = f64(out[1]);
  const dx = out.length > 2 ? f64(out[2]) : undefined;
  const wShape = `KH=${g.KH}, KW=${g.KW}, C=${g.C}, K=${K}`;
  need(op, 'x', x, g.B * g.H * g.W * g.C, geomShape(g));
  need(op, 'w', w, g.KH * g.KW * g.C * K, wShape);
  need(op, 'dy', dy, g.B * g.OH * g.OW * K, outShape(g, K));
  need(op, 'dw', dw, g.KH * g.KW * g.C * K, wShape);
  need(op, 'db', db, K, `K=${K}`);
  if (dx) need(op, 'dx', dx, g.B * g.H * g.W * g.C, geomShape(g));
  const nW = g.KH * g.KW * g.C * K;
  const dwSum = new Float64Array(nW), dbSum = new Float64Array(K);
  if (dx) dx.fill(0, 0, g.B * g.H * g.W * g.C);
  for (let b = 0; b < g.B; b++) {
    for (let oh = 0; oh < g.OH; oh++) {
      for (let ow = 0; ow < g.OW; ow++) {
        for (let k = 0; k < K; k++) {
          const d = dy[((b * g.OH + oh) * g.OW + ow) * K + k];
          dbSum[k] += d;
          for (let kh = 0; kh < g.KH; kh++) {
            const ih = oh * g.SH - g.padTop + kh;
            if (ih < 0 || ih >= g.H) continue;
            for (let kw = 0; kw < g.KW; kw++) {
              const iw = ow * g.SW - g.padLeft + kw;
              if (iw < 0 || iw >= g.W) continue;
              for (let c = 0; c < g.C; c++) {
                const xi = ((b * g.H + ih) * g.W + iw) * g.C + c, wi = ((kh * g.KW + kw) * g.C + c) * K + k;
                dwSum[wi] += x[xi] * d;
                if (dx) dx[xi] += w[wi] * d;
              }
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < nW; i++) dw[i] = accumulate ? dw[i] + dwSum[i] : dwSum[i];
  for (let k = 0; k < K; k++) db[k] = accumulate ? db[k] + dbSum[k] : dbSum[k];
});

defineKernel('maxpool_forward', { inputs: [['x', 'f32']], outputs: [['y', 'f32'], ['argmax', 'i32']] },
  (inp, out, a) => {
    // x is (B,H,W,C); y is (B,OH,OW,C), argmax is (B,OH,OW,C): flat index into x, first max (lowest index) on ties
    const op = 'maxpool_forward';
    const g = convGeom(op, a);
    const x = f64(inp[0]), y = f64(out[0]), am = i32(out[1]);
    const nIn = g.B * g.H * g.W * g.C, nOut = g.B * g.OH * g.OW * g.C;
    if (nIn > 2147483647) fail(op, `B*H*W*C=${nIn} exceeds the i32 argmax range`);
    need(op, 'x', x, nIn, geomShape(g));
    need(op, 'y', y, nOut, outShape(g, g.C));
    need(op, 'argmax', am, nOut, outShape(g, g.C));
    for (let b = 0; b < g.B; b++) {
      for (let oh = 0; oh < g.OH; oh++) {
        for (let ow = 0; ow < g.OW; ow++) {
          for (let c = 0; c < g.C; c++) {
            let best = -Infinity, arg = -1;
            for (let kh = 0; kh < g.KH; kh++) {
              const ih = oh * g.SH - g.padTop + kh;
              if (ih < 0 || ih >= g.H) continue;
              for (let kw = 0; kw < g.KW; kw++) {
                const iw = ow * g.SW - g.padLeft + kw;
                if (iw < 0 || iw >= g.W) continue;
                const xi = ((b * g.H + ih) * g.W + iw) * g.C + c;
                if (arg < 0 || x[xi] > best) {
                  best = x[xi];
                  arg = xi;
                }
              }
            }
            const o = ((b * g.OH + oh) * g.OW + ow) * g.C + c;
            y[o] = arg < 0 ? 0 : best;
            am[o] = arg;
          }
        }
      }
    }
  });

defineKernel('maxpool_backward', { inputs: [['dy', 'f32'], ['argmax', 'i32']], outputs: [['dx', 'f32']] },
  (inp, out, a) => {
    // dy is (B,OH,OW,C), argmax is (B,OH,OW,C); dx is (B,H,W,C): zeroed, then dx[argmax[o]] += dy[o]
    const op = 'maxpool_backward';
    const g = convGeom(op, a);
    const dy = f64(inp[0]), am = i32(inp[1]), dx = f64(out[0]);
    const nIn = g.B * g.H * g.W * g.C, nOut = g.B * g.OH * g.OW * g.C;
    need(op, 'dy', dy, nOut, outShape(g, g.C));
    need(op, 'argmax', am, nOut, outShape(g, g.C));
    need(op, 'dx', dx, nIn, geomShape(g));
    for (let o = 0; o < nOut; o++) {
      const c = o % g.C, pos = Math.floor(o / g.C);
      const ow = pos % g.OW, oh = Math.floor(pos / g.OW) % g.OH, b = Math.floor(pos / (g.OW * g.OH));
      const v = am[o];
      const ac = v % g.C, apos = Math.floor(v / g.C);
      const aw = apos % g.W, ah = Math.floor(apos / g.W) % g.H, ab = Math.floor(apos / (g.W * g.H));
      const ih0 = oh * g.SH - g.padTop, iw0 = ow * g.SW - g.padLeft;
      const inside = v >= 0 && v < nIn && ac === c && ab === b && ah >= ih0 && ah < ih0 + g.KH && aw >= iw0 &&
        aw < iw0 + g.KW;
      if (!inside) fail(op, `argmax ${v} at o ${o} is not a cell of that output's window`);
    }
    dx.fill(0, 0, nIn);
    for (let o = 0; o < nOut; o++) dx[am[o]] += dy[o];
  });

/** LRN attributes: N rows of C channels, window radius, and TF's bias, alpha, beta. */
function lrnAttrs(op: string, a: Record<string, number>) {
  return {
    N: dim(op, a, 'N'), C: dim(op, a, 'C'), r: dim(op, a, 'depthRadius'),
    bias: num(op, a, 'bias'), alpha: num(op, a, 'alpha'), beta: num(op, a, 'beta'),
  };
}

defineKernel('lrn_forward', { inputs: [['x', 'f32']], outputs: [['y', 'f32'], ['scale', 'f32']] }, (inp, out, a) => {
  // x is (N,C); y is (N,C), scale is (N,C) = bias + alpha·Σ_{|c'−c| <= r} x[c']²; y = x·scale^−beta (tf.nn.lrn)
  const op = 'lrn_forward';
  const { N, C, r, bias, alpha, beta } = lrnAttrs(op, a);
  const x = f64(inp[0]), y = f64(out[0]), scale = f64(out[1]);
  need(op, 'x', x, N * C, `N=${N}, C=${C}`);
  need(op, 'y', y, N * C, `N=${N}, C=${C}`);
  need(op, 'scale', scale, N * C, `N=${N}, C=${C}`);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      let ss = 0;
      for (let j = Math.max(0, c - r); j <= Math.min(C - 1, c + r); j++) ss += x[n * C + j] * x[n * C + j];
      const s = bias + alpha * ss;
      scale[n * C + c] = s;
      y[n * C + c] = x[n * C + c] * Math.pow(s, -beta);
    }
  }
});

defineKernel('lrn_backward', {
  inputs: [['x', 'f32'], ['y', 'f32'], ['dy', 'f32'], ['scale', 'f32']],
  outputs: [['dx', 'f32']],
}, (inp, out, a) => {
  // x, y, dy, scale are (N,C); dx is (N,C) = dy·scale^−beta − 2·alpha·beta·x·Σ_{|c−j| <= r} dy[c]·y[c]/scale[c]
  const op = 'lrn_backward';
  const { N, C, r, alpha, beta } = lrnAttrs(op, a);
  const x = f64(inp[0]), y = f64(inp[1]), dy = f64(inp[2]), scale = f64(inp[3]), dx = f64(out[0]);
  for (const [name, t] of [['x', x], ['y', y], ['dy', dy], ['scale', scale], ['dx', dx]] as const) {
    need(op, name, t, N * C, `N=${N}, C=${C}`);
  }
  const t = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) t[c] = (dy[n * C + c] * y[n * C + c]) / scale[n * C + c];
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let c = Math.max(0, j - r); c <= Math.min(C - 1, j + r); c++) s += t[c];
      const k = n * C + j;
      dx[k] = dy[k] * Math.pow(scale[k], -beta) - 2 * alpha * beta * x[k] * s;
    }
  }
});

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

export const referenceKernels: Readonly<Record<string, RefKernel>> = Object.freeze(kernels);

/** Argument names and dtypes per kernel, so a backend can validate a program when it is compiled. */
export const referenceSignatures: Readonly<Record<string, RefSignature>> = Object.freeze(signatures);
