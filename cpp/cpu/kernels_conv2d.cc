// CPU conv2d, NHWC (see docs/kernels.md, "Convolution and pooling"): im2col + GEMM over groups of whole images, the
// groups spread over the device's GEMM threads (Note [Conv chunks]).
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "gemm.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// Note [Conv chunks]: conv2d_forward and conv2d_backward cut the batch into groups of whole images, the column matrix
// of a group about 2 MB (a whole image per group when one image is larger; its rows then go in sub-chunks, one after
// the other, of the same size), and the groups into at most kConvParts parts of consecutive groups. All of it reads
// the shape alone (convPlan). The device's GEMM threads take groups (forward) or parts (backward) one at a time
// (gemmForEach); each product of a group is one single-threaded sgemmAlone call, so the thread count decides only who
// computes a piece, never how it is cut or summed, and conv2d gives the same bits on any number of GEMM threads.
// Groups write disjoint rows of y and, being whole images, disjoint cells of dx (col2im never crosses an image). The
// weight gradient of a part is summed into that part's own buffer (its sub-chunks in order, by the GEMM's beta = 1),
// and dw = the parts' buffers added in part order; db likewise, in double per part, the parts added in order. So
// everything around the GEMMs (im2col, col2im, the bias rows, the column sums) runs on all the threads as well.

namespace {

constexpr int64_t kGroupFloats = int64_t(1) << 19;  // a group's column matrix: 2 MB, about a Zen 4 core's L2 twice
constexpr int64_t kConvParts = 8;

struct ConvPlan {
  int64_t rowsPerImage, images, groups;  // images per group; groups = ceil(B / images)
  int64_t step;                          // rows per sub-chunk (a whole group unless one image is larger)
  int64_t parts, groupsPerPart;
};

ConvPlan convPlan(const ConvGeom& g, int64_t kk) {
  ConvPlan p{};
  p.rowsPerImage = g.OH * g.OW;
  const int64_t imageFloats = std::max<int64_t>(p.rowsPerImage * std::max<int64_t>(kk, 1), 1);
  p.images = std::max<int64_t>(1, std::min<int64_t>(g.B, kGroupFloats / imageFloats));
  p.groups = (g.B + p.images - 1) / p.images;
  const int64_t groupRows = std::max<int64_t>(p.images * p.rowsPerImage, 1);
  p.step = std::max<int64_t>(1, std::min<int64_t>(groupRows, kGroupFloats / std::max<int64_t>(kk, 1)));
  p.groupsPerPart = (p.groups + kConvParts - 1) / kConvParts;
  p.parts = p.groups == 0 ? 0 : (p.groups + p.groupsPerPart - 1) / p.groupsPerPart;
  return p;
}

// Rows [r0, r1) of the output (r = (b·OH + oh)·OW + ow) of group j.
void groupRows(const ConvPlan& p, int64_t M, int64_t j, int64_t& r0, int64_t& r1) {
  r0 = std::min(M, j * p.images * p.rowsPerImage);
  r1 = std::min(M, (j + 1) * p.images * p.rowsPerImage);
}

// Per-thread scratch for the column matrices, kept between calls (each GEMM thread has its own).
float* scratchFloats(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.assign((size_t)n, 0.f);
  return v.data();
}

// Row r of the column matrix (r = (b·OH + oh)·OW + ow) is the receptive field of that output, ordered (kh, kw, c) to
// match the filter's (KH, KW, C, K) layout; cells in the padding are 0. Rows [r0, r0 + m) go to col (m, KH·KW·C).
void im2col(const ConvGeom& g, const float* x, int64_t r0, int64_t m, float* col) {
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
void col2imAdd(const ConvGeom& g, const float* col, int64_t r0, int64_t m, float* dx) {
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
bool isPointwise(const ConvGeom& g) { return g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1; }

}  // namespace

// in: x (B,H,W,C), w (KH,KW,C,K), b (K); out: y (B,OH,OW,K)
TL_CPU_KERNEL(conv2d_forward) {
  const ConvArgs& a = c.args<ConvArgs>();
  const ConvGeom& g = a.g;
  const int64_t K = a.K, M = a.M, kk = a.kk;
  const int iK = a.iK, iKK = a.iKK;
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  float* py = y.f32();
  const float *pb = b.f32(), *px = x.f32(), *pw = w.f32();
  if (K == 0 || M == 0) return;
  const bool pointwise = isPointwise(g) || kk == 0;
  const ConvPlan p = convPlan(g, kk);
  // y rows of group j = the bias, then += col·w (Note [Conv chunks])
  gemmForEach((int)p.groups, [&](int j) {
    int64_t r0, r1;
    groupRows(p, M, j, r0, r1);
    for (int64_t r = r0; r < r1; ++r) std::copy(pb, pb + K, py + r * K);
    if (kk == 0) return;
    if (pointwise) {  // x rows are the column rows
      sgemmAlone(false, false, (int)(r1 - r0), iK, iKK, 1.f, px + r0 * kk, iKK, pw, iK, 1.f, py + r0 * K, iK);
      return;
    }
    static thread_local std::vector<float> colBuf;
    float* col = scratchFloats(colBuf, p.step * kk);
    for (int64_t s0 = r0; s0 < r1; s0 += p.step) {
      const int64_t m = std::min(p.step, r1 - s0);
      im2col(g, px, s0, m, col);
      sgemmAlone(false, false, (int)m, iK, iKK, 1.f, col, iKK, pw, iK, 1.f, py + s0 * K, iK);
    }
  });
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
  float *pdw = dw.f32(), *pdb = db.f32(), *pdx = wantDx ? c.out[2].f32() : nullptr;
  if (K == 0) return;
  if (M == 0 || kk == 0) {  // empty sums: dw = 0 (or unchanged), dx = 0; db = the column sums of dy
    std::vector<double> s(K, 0.0);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t k = 0; k < K; ++k) s[k] += pdy[r * K + k];
    for (int64_t k = 0; k < K; ++k) pdb[k] = acc ? (float)((double)pdb[k] + s[k]) : (float)s[k];
    if (!acc) std::fill(pdw, pdw + kk * K, 0.f);
    if (wantDx) std::fill(pdx, pdx + g.inNumel(), 0.f);
    return;
  }
  const bool pointwise = isPointwise(g);
  const ConvPlan p = convPlan(g, kk);
  // Part q's sums (Note [Conv chunks]): dw (KK,K) in parts[q], db (K) in double in dbParts[q].
  static thread_local std::vector<float> partBuf;
  static thread_local std::vector<double> dbBuf;
  float* parts = scratchFloats(partBuf, p.parts * kk * K);
  if ((int64_t)dbBuf.size() < p.parts * K) dbBuf.assign((size_t)(p.parts * K), 0.0);
  double* dbParts = dbBuf.data();
  gemmForEach((int)p.parts, [&](int q) {
    float* dwq = parts + q * kk * K;
    double* dbq = dbParts + q * K;
    std::fill(dbq, dbq + K, 0.0);
    static thread_local std::vector<float> colBuf, dcolBuf;
    float* col = pointwise ? nullptr : scratchFloats(colBuf, p.step * kk);
    float* dcol = wantDx && !pointwise ? scratchFloats(dcolBuf, p.step * kk) : nullptr;
    bool first = true;
    const int64_t j1 = std::min(p.groups, (q + 1) * p.groupsPerPart);
    for (int64_t j = q * p.groupsPerPart; j < j1; ++j) {
      int64_t r0, r1;
      groupRows(p, M, j, r0, r1);
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = pdy + r * K;
        for (int64_t k = 0; k < K; ++k) dbq[k] += row[k];
      }
      if (wantDx && !pointwise) {
        const int64_t perImage = g.H * g.W * g.C, b0 = r0 / p.rowsPerImage, b1 = (r1 + p.rowsPerImage - 1) / p.rowsPerImage;
        std::fill(pdx + b0 * perImage, pdx + b1 * perImage, 0.f);
      }
      for (int64_t s0 = r0; s0 < r1; s0 += p.step) {
        const int64_t m = std::min(p.step, r1 - s0);
        const float* dyc = pdy + s0 * K;
        // dw_q (KK,K) (+)= colᵀ (KK,m) · dy (m,K)
        const float* cm = px + s0 * kk;  // pointwise: x rows are the column rows
        if (!pointwise) {
          im2col(g, px, s0, m, col);
          cm = col;
        }
        sgemmAlone(true, false, iKK, iK, (int)m, 1.f, cm, iKK, dyc, iK, first ? 0.f : 1.f, dwq, iK);
        first = false;
        if (!wantDx) continue;
        if (pointwise) {  // dx rows (m,C) = dy·wᵀ
          sgemmAlone(false, true, (int)m, iKK, iK, 1.f, dyc, iK, pw, iK, 0.f, pdx + s0 * kk, iKK);
          continue;
        }
        // dcol (m,KK) = dy (m,K) · wᵀ (K,KK), then scattered back onto dx (this group's images only)
        sgemmAlone(false, true, (int)m, iKK, iK, 1.f, dyc, iK, pw, iK, 0.f, dcol, iKK);
        col2imAdd(g, dcol, s0, m, pdx);
      }
    }
  });
  // The parts in order (Note [Conv chunks]), into part 0, then onto dw: by blocks of dw on the threads
  forEachRowBlock(kk * K, 1, [&](int64_t i0, int64_t i1) {
    float* __restrict__ s = parts;
    for (int64_t q = 1; q < p.parts; ++q) {
      const float* __restrict__ t = parts + q * kk * K;
      for (int64_t i = i0; i < i1; ++i) s[i] += t[i];
    }
    for (int64_t i = i0; i < i1; ++i) pdw[i] = acc ? pdw[i] + s[i] : s[i];
  });
  for (int64_t k = 0; k < K; ++k) {
    double s = dbParts[k];
    for (int64_t q = 1; q < p.parts; ++q) s += dbParts[q * K + k];
    pdb[k] = acc ? (float)((double)pdb[k] + s) : (float)s;
  }
}

}  // namespace cpuk
}  // namespace tl
