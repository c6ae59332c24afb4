// Input: gathers and the image crop (float64 reference).
import { fail, dim, num, need, checkRange, f64, i32, u8, defineKernel } from './define.js';

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
