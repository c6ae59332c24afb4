// Convolution, pooling and LRN in NHWC (float64 reference).
import { fail, dim, num, flag, need, f64, i32, defineKernel } from './define.js';

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
