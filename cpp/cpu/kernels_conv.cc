// CPU convolution, pooling and dropout kernels, NHWC (see docs/kernels.md, "Convolution and pooling"); LRN is in
// kernels_lrn.cc.
// conv2d runs as im2col + sgemm over chunks of output rows; everything else is plain loops on one thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "isa.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// ---- conv2d ------------------------------------------------------------------------------------------------------

// Per-thread scratch for the column matrices, kept between calls (kernels of one device run on its thread).
static float* scratchFloats(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.assign((size_t)n, 0.f);
  return v.data();
}

// Output rows per chunk: the column matrix of one chunk stays around 4 MB (a few images of a CIFAR-sized layer).
static int64_t chunkRows(int64_t kk, int64_t rows) {
  const int64_t budget = int64_t(1) << 20;  // floats
  return std::max<int64_t>(1, std::min<int64_t>(rows, budget / std::max<int64_t>(kk, 1)));
}

// Row r of the column matrix (r = (b·OH + oh)·OW + ow) is the receptive field of that output, ordered (kh, kw, c) to
// match the filter's (KH, KW, C, K) layout; cells in the padding are 0. Rows [r0, r0 + m) go to col (m, KH·KW·C).
static void im2col(const ConvGeom& g, const float* x, int64_t r0, int64_t m, float* col) {
  const int64_t C = g.C, KW = g.KW, kk = g.KH * KW * C, rowC = KW * C;
  for (int64_t r = r0; r < r0 + m; ++r) {
    const int64_t b = r / (g.OH * g.OW), rem = r - b * g.OH * g.OW, oh = rem / g.OW, ow = rem - oh * g.OW;
    const int64_t ih0 = oh * g.SH - g.padTop, iw0 = ow * g.SW - g.padLeft;
    float* dst = col + (r - r0) * kk;
    const bool wInside = iw0 >= 0 && iw0 + KW <= g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh, dst += rowC) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= g.H) {
        std::memset(dst, 0, sizeof(float) * rowC);
        continue;
      }
      const float* src = x + ((b * g.H + ih) * g.W) * C;
      if (wInside) {  // the KW cells of this filter row are contiguous in NHWC
        std::memcpy(dst, src + iw0 * C, sizeof(float) * rowC);
        continue;
      }
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = iw0 + kw;
        if (iw < 0 || iw >= g.W) std::memset(dst + kw * C, 0, sizeof(float) * C);
        else std::memcpy(dst + kw * C, src + iw * C, sizeof(float) * C);
      }
    }
  }
}

// The adjoint of im2col: dx += the column rows [r0, r0 + m), padding cells dropped.
static void col2imAdd(const ConvGeom& g, const float* col, int64_t r0, int64_t m, float* dx) {
  const int64_t C = g.C, KW = g.KW, kk = g.KH * KW * C, rowC = KW * C;
  for (int64_t r = r0; r < r0 + m; ++r) {
    const int64_t b = r / (g.OH * g.OW), rem = r - b * g.OH * g.OW, oh = rem / g.OW, ow = rem - oh * g.OW;
    const int64_t ih0 = oh * g.SH - g.padTop, iw0 = ow * g.SW - g.padLeft;
    const float* src = col + (r - r0) * kk;
    const int64_t kw0 = std::max<int64_t>(0, -iw0), kw1 = std::min<int64_t>(KW, g.W - iw0);
    for (int64_t kh = 0; kh < g.KH; ++kh, src += rowC) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= g.H || kw0 >= kw1) continue;
      float* dst = dx + ((b * g.H + ih) * g.W + iw0 + kw0) * C;  // cells kw0..kw1−1 of this filter row
      const float* s = src + kw0 * C;
      for (int64_t j = 0; j < (kw1 - kw0) * C; ++j) dst[j] += s[j];
    }
  }
}

// A 1x1 filter with stride 1 needs no column matrix: x itself is (B·H·W, C).
static bool isPointwise(const ConvGeom& g) { return g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1; }

// in: x (B,H,W,C), w (KH,KW,C,K), b (K); out: y (B,OH,OW,K)
TL_CPU_KERNEL(conv2d_forward) {
  const ConvArgs& a = c.args<ConvArgs>();
  const ConvGeom& g = a.g;
  const int64_t K = a.K, M = a.M, kk = a.kk;
  const int iK = a.iK, iKK = a.iKK;
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  float* py = y.f32();
  const float* pb = b.f32();
  for (int64_t r = 0; r < M; ++r) std::copy(pb, pb + K, py + r * K);
  if (K == 0 || M == 0 || kk == 0) return;
  if (isPointwise(g)) {
    sgemm(false, false, (int)M, iK, iKK, 1.f, x.f32(), std::max(iKK, 1), w.f32(), iK, 1.f, py, iK);
    return;
  }
  static thread_local std::vector<float> colBuf;
  const int64_t step = chunkRows(kk, M);
  float* col = scratchFloats(colBuf, step * kk);
  for (int64_t r0 = 0; r0 < M; r0 += step) {
    const int64_t m = std::min(step, M - r0);
    im2col(g, x.f32(), r0, m, col);
    sgemm(false, false, (int)m, iK, iKK, 1.f, col, iKK, w.f32(), iK, 1.f, py + r0 * K, iK);
  }
}

// in: x (B,H,W,C), w (KH,KW,C,K), dy (B,OH,OW,K); out: dw (KH,KW,C,K), db (K) [, dx (B,H,W,C)]
TL_CPU_KERNEL(conv2d_backward) {
  const ConvBackwardArgs& a = c.args<ConvBackwardArgs>();
  const ConvGeom& g = a.g;
  const int64_t K = a.K, M = a.M, kk = a.kk;
  const int iK = a.iK, iKK = a.iKK;
  const bool acc = a.acc, wantDx = a.wantDx;
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2], &dw = c.out[0], &db = c.out[1];
  const float *px = x.f32(), *pw = w.f32(), *pdy = dy.f32();
  float *pdw = dw.f32(), *pdx = wantDx ? c.out[2].f32() : nullptr;

  // db (K) = column sums of dy, in double across the B·OH·OW rows
  {
    std::vector<double> s(K, 0.0);
    for (int64_t r = 0; r < M; ++r) {
      const float* row = pdy + r * K;
      for (int64_t k = 0; k < K; ++k) s[k] += row[k];
    }
    float* pdb = db.f32();
    for (int64_t k = 0; k < K; ++k) pdb[k] = acc ? (float)((double)pdb[k] + s[k]) : (float)s[k];
  }
  if (K == 0) return;
  if (M == 0 || kk == 0) {  // empty sums: dw = 0 (or unchanged), dx = 0
    if (!acc) std::fill(pdw, pdw + kk * K, 0.f);
    if (wantDx) std::fill(pdx, pdx + g.inNumel(), 0.f);
    return;
  }
  if (isPointwise(g)) {
    // dw (C,K) = xᵀ·dy; dx (B·H·W, C) = dy·wᵀ
    sgemm(true, false, iKK, iK, (int)M, 1.f, px, iKK, pdy, iK, acc ? 1.f : 0.f, pdw, iK);
    if (wantDx) sgemm(false, true, (int)M, iKK, iK, 1.f, pdy, iK, pw, iK, 0.f, pdx, iKK);
    return;
  }
  static thread_local std::vector<float> colBuf, dcolBuf;
  const int64_t step = chunkRows(kk, M);
  float* col = scratchFloats(colBuf, step * kk);
  float* dcol = wantDx ? scratchFloats(dcolBuf, step * kk) : nullptr;
  if (wantDx) std::fill(pdx, pdx + g.inNumel(), 0.f);
  for (int64_t r0 = 0; r0 < M; r0 += step) {
    const int64_t m = std::min(step, M - r0);
    const float* dyc = pdy + r0 * K;
    // dw (KK,K) (+)= colᵀ (KK,m) · dy (m,K); chunks after the first always add
    im2col(g, px, r0, m, col);
    sgemm(true, false, iKK, iK, (int)m, 1.f, col, iKK, dyc, iK, (acc || r0 > 0) ? 1.f : 0.f, pdw, iK);
    if (wantDx) {
      // dcol (m,KK) = dy (m,K) · wᵀ (K,KK), then scattered back onto dx
      sgemm(false, true, (int)m, iKK, iK, 1.f, dyc, iK, pw, iK, 0.f, dcol, iKK);
      col2imAdd(g, dcol, r0, m, pdx);
    }
  }
}

// ---- max pooling -------------------------------------------------------------------------------------------------

namespace {

// The window loops of maxpool_forward on the ISA path (Note [Kernel ISA] in isa.h): selects only, the same bits on each.
struct MaxpoolForward {
  TL_ISA_INLINE static void run(const ConvGeom* gp, const float* px, float* py, int32_t* pa) {
    const ConvGeom& g = *gp;
    const int64_t C = g.C;
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t ih0 = oh * g.SH - g.padTop;
        const int64_t h0 = std::max<int64_t>(ih0, 0), h1 = std::min<int64_t>(ih0 + g.KH, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t iw0 = ow * g.SW - g.padLeft;
          const int64_t w0 = std::max<int64_t>(iw0, 0), w1 = std::min<int64_t>(iw0 + g.KW, g.W);
          const int64_t o = ((b * g.OH + oh) * g.OW + ow) * C;
          float* __restrict__ yo = py + o;
          int32_t* __restrict__ ao = pa + o;
          bool first = true;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const int64_t base = ((b * g.H + ih) * g.W + iw) * C;
              const float* __restrict__ xi = px + base;
              if (first) {
                for (int64_t ch = 0; ch < C; ++ch) { yo[ch] = xi[ch]; ao[ch] = (int32_t)(base + ch); }
                first = false;
              } else {
                const int32_t b32 = (int32_t)base, C32 = (int32_t)C;
                for (int32_t ch = 0; ch < C32; ++ch) {  // branch-free selects, so the channel loop vectorises
                  const float v = xi[ch], cur = yo[ch];
                  const int32_t a = ao[ch];
                  const int32_t m = -(int32_t)(v > cur);  // all ones where v wins
                  yo[ch] = v > cur ? v : cur;
                  ao[ch] = (a & ~m) | ((b32 + ch) & m);
                }
              }
            }
          if (first)  // unreachable under the padding rules (every window holds an input cell); kept total
            for (int64_t ch = 0; ch < C; ++ch) { yo[ch] = 0.f; ao[ch] = -1; }
        }
      }
  }
};

}  // namespace

// in: x (B,H,W,C); out: y (B,OH,OW,C), argmax (B,OH,OW,C) i32. The first maximum in window order (kh, kw), i.e. the
// lowest flat index, wins ties; padding cells never take part.
TL_CPU_KERNEL(maxpool_forward) {
  const PoolArgs& a = c.args<PoolArgs>();
  perIsa<MaxpoolForward>(&a.g, static_cast<const float*>(c.in[0].f32()), c.out[0].f32(), c.out[1].i32());
}

// in: dy (B,OH,OW,C), argmax (B,OH,OW,C) i32; out: dx (B,H,W,C) = 0, then dx[argmax[o]] += dy[o].
// Every argmax must lie inside its own window (as maxpool_forward writes it); otherwise an error, nothing written.
TL_CPU_KERNEL(maxpool_backward) {
  const PoolArgs& a = c.args<PoolArgs>();
  const ConvGeom& g = a.g;
  const int64_t nOut = a.nOut;
  const TensorRef &dy = c.in[0], &am = c.in[1], &dx = c.out[0];
  const int32_t* pa = am.i32();
  const int64_t C = g.C;
  // Every argmax must be a cell of its own window: a = imageBase + (ah·W + aw)·C + ch with ah, aw inside the window.
  // 32-bit unsigned arithmetic: all indices are below 2^31 (maxpoolBackwardArgs).
  const uint32_t uC = (uint32_t)std::max<int64_t>(C, 1), uW = (uint32_t)std::max<int64_t>(g.W, 1);
  const uint32_t imageSize = (uint32_t)(g.H * g.W * C);
  for (int64_t b = 0, o = 0; b < g.B; ++b)
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t ih0 = oh * g.SH - g.padTop;
      const int64_t h0 = std::max<int64_t>(ih0, 0), h1 = std::min<int64_t>(ih0 + g.KH, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t iw0 = ow * g.SW - g.padLeft;
        const int64_t w0 = std::max<int64_t>(iw0, 0), w1 = std::min<int64_t>(iw0 + g.KW, g.W);
        const int64_t imageBase = b * g.H * g.W * C;
        bool ok = true;
        for (int64_t ch = 0; ch < C; ++ch) {
          const uint32_t rel = (uint32_t)((int64_t)pa[o + ch] - imageBase - ch);  // wraps when out of the image
          const uint32_t pix = rel / uC, ah = pix / uW, aw = pix - ah * uW;
          ok &= rel < imageSize && pix * uC == rel && ah >= h0 && ah < h1 && aw >= w0 && aw < w1;
        }
        if (!ok)
          for (int64_t ch = 0; ch < C; ++ch) {
            const uint32_t rel = (uint32_t)((int64_t)pa[o + ch] - imageBase - ch);
            const uint32_t pix = rel / uC, ah = pix / uW, aw = pix - ah * uW;
            TL_KCHECK(c, rel < imageSize && pix * uC == rel && ah >= h0 && ah < h1 && aw >= w0 && aw < w1,
                      "argmax at o=" << o + ch << " is " << pa[o + ch] << ", not a cell of that output's window; "
                                     << "pass maxpool_forward's argmax with the same attributes");
          }
        o += C;
      }
    }
  float* pdx = dx.f32();
  const float* pdy = dy.f32();
  std::fill(pdx, pdx + g.inNumel(), 0.f);
  for (int64_t o = 0; o < nOut; ++o) pdx[pa[o]] += pdy[o];
}

// ---- dropout -----------------------------------------------------------------------------------------------------

// in: x (N), hyper; out: y (N), mask (N) = 1/keepProb where dropoutHash(seed, step, i) < ceil(keepProb·2^32), else 0.
// step = hyper's step slot (the optimizer step t, rewritten before every step), so one compiled program draws a new
// mask each step.
TL_CPU_KERNEL(dropout_forward) {
  const DropoutArgs& a = c.args<DropoutArgs>();
  const int64_t N = a.N;
  const uint64_t step = dropoutStep(c, c.in[1].f32());
  const uint64_t threshold = (uint64_t)std::ceil(a.keepProb * 4294967296.0);
  const float inv = (float)(1.0 / a.keepProb);
  const DropoutKey key = dropoutKey(a.seed, step);
  const float* x = c.in[0].f32();
  float *y = c.out[0].f32(), *mask = c.out[1].f32();
  for (int64_t i = 0; i < N; ++i) {
    const float m = (uint64_t)dropoutHash(key, (uint32_t)i) < threshold ? inv : 0.f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

// in: dy (N), mask (N); out: dx (N) = dy·mask (dx may alias dy)
TL_CPU_KERNEL(dropout_backward) {
  const int64_t N = c.args<SizeArgs>().N;
  const float *dy = c.in[0].f32(), *mask = c.in[1].f32();
  float* dx = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) dx[i] = dy[i] * mask[i];
}

}  // namespace cpuk
}  // namespace tl
