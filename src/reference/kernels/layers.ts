// Layers: dense, activations, losses, accuracy (float64 reference).
import { dim, flag, need, checkRange, f64, i32, defineKernel, needHyper } from './define.js';

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

defineKernel('matmul', { inputs: [['A', 'f32'], ['B', 'f32']], outputs: [['C', 'f32']] }, (inp, out, a) => {
  // A is (M,K) or, with transA, (K,M); B is (K,N) or, with transB, (N,K); C is (M,N)
  const op = 'matmul';
  const M = dim(op, a, 'M'), N = dim(op, a, 'N'), K = dim(op, a, 'K');
  const tA = flag(op, a, 'transA'), tB = flag(op, a, 'transB');
  const A = f64(inp[0]), B = f64(inp[1]), C = f64(out[0]);
  need(op, 'A', A, M * K, `M=${M}, K=${K}`);
  need(op, 'B', B, K * N, `K=${K}, N=${N}`);
  need(op, 'C', C, M * N, `M=${M}, N=${N}`);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[tA ? k * M + m : m * K + k] * B[tB ? n * K + k : k * N + n];
      C[m * N + n] = s;
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
  const wantDw = !flag(op, a, 'noWeightGrad');
  const x = f64(inp[0]), W = f64(inp[1]), dy = f64(inp[2]), dW = f64(out[0]), db = f64(out[1]);
  const dx = out.length > 2 ? f64(out[2]) : undefined;
  need(op, 'x', x, B * I, `B=${B}, I=${I}`);
  need(op, 'W', W, I * O, `I=${I}, O=${O}`);
  need(op, 'dy', dy, B * O, `B=${B}, O=${O}`);
  need(op, 'dW', dW, I * O, `I=${I}, O=${O}`);
  need(op, 'db', db, O, `O=${O}`);
  if (dx) need(op, 'dx', dx, B * I, `B=${B}, I=${I}`);
  for (let i = 0; i < I && wantDw; i++) {
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
