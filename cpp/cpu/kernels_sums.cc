// Σx² and the fused L2-gradient sums (kernels_sums.h): the portable loop, and AVX2 / AVX-512 loops in intrinsics
// (the auto-vectoriser does not lay out two double reductions beside a store), all in one summation order.
#include "kernels_sums.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "isa.h"

namespace tl {
namespace cpuk {

// Note [Sixteen partial sums]: a long sum in double is kept as 16 partial sums, element i going to sum i mod 16,
// each added to in index order, then folded in one fixed tree ((s0+s8)+(s4+s12))+... (w = 8, 4, 2, 1 below). The
// portable loop writes it plainly; the AVX2 loop holds the sums as 4 vectors of 4 doubles, the AVX-512 loop as 2
// of 8, lane k of the whole being sum k. Every path thus adds the same doubles in the same order, so the result is
// the same bits on every path (Note [Kernel ISA]); 16 independent chains also hide the latency of the dependent
// double adds (a single running sum is latency-bound). The products are exact: a float squared fits a double.
// A sum longer than kSumBlock elements is cut into blocks of kSumBlock (by its length alone), each block summed as
// above, the blocks on the device's GEMM threads (gemmForEach), and the blocks' sums added in block order: the same
// bits on any number of threads, and sumSquares and l2GradSums still cut and add alike.

namespace {

TL_ISA_INLINE double sq(float v) { return (double)v * (double)v; }

// The elements from i (a multiple of 16) to n, then the fold.
TL_ISA_INLINE double finishSq(double* s, const float* x, int64_t i, int64_t n) {
  for (; i < n; ++i) s[i & 15] += sq(x[i]);
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) s[k] += s[k + w];
  return s[0];
}

// The sums of one block of l2GradSums: Σ g² of the new g, Σ w², and (when asked) Σ g² of the g given.
struct L2Sums {
  double g2 = 0, w2 = 0, old2 = 0;
};

// The elements from i (a multiple of 16) to n, then the folds; so == nullptr: no sum of the incoming g.
TL_ISA_INLINE void finishL2(double* sg, double* sw, double* so, const float* w, float* g, int64_t i, int64_t n,
                            float lambda, L2Sums* r) {
  for (; i < n; ++i) {
    if (so) so[i & 15] += sq(g[i]);
    const float gi = g[i] + lambda * w[i];
    g[i] = gi;
    sg[i & 15] += sq(gi);
    sw[i & 15] += sq(w[i]);
  }
  for (int q = 8; q >= 1; q /= 2)
    for (int k = 0; k < q; ++k) {
      sg[k] += sg[k + q];
      sw[k] += sw[k + q];
      if (so) so[k] += so[k + q];
    }
  *r = {sg[0], sw[0], so ? so[0] : 0.0};
}

double sumSquaresScalar(const float* x, int64_t n) {
  double s[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) s[k] += sq(x[i + k]);
  return finishSq(s, x, i, n);
}

void l2GradSumsScalar(const float* w, float* g, int64_t n, float lambda, bool old, L2Sums* r) {
  double sg[16] = {0}, sw[16] = {0}, so[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) {
      if (old) so[k] += sq(g[i + k]);
      const float gi = g[i + k] + lambda * w[i + k];
      g[i + k] = gi;
      sg[k] += sq(gi);
      sw[k] += sq(w[i + k]);
    }
  finishL2(sg, sw, old ? so : nullptr, w, g, i, n, lambda, r);
}

#ifdef TL_ISA_X86

#define TL_AVX2 __attribute__((target("avx2")))
#define TL_AVX512 __attribute__((target("avx512f")))

// acc += (double)v² for 4 floats
TL_AVX2 inline __m256d sqAddAvx2(__m256d acc, __m128 v) {
  const __m256d d = _mm256_cvtps_pd(v);
  return _mm256_add_pd(acc, _mm256_mul_pd(d, d));
}

TL_AVX2 double sumSquaresAvx2(const float* x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = sqAddAvx2(a0, _mm_loadu_ps(x + i));
    a1 = sqAddAvx2(a1, _mm_loadu_ps(x + i + 4));
    a2 = sqAddAvx2(a2, _mm_loadu_ps(x + i + 8));
    a3 = sqAddAvx2(a3, _mm_loadu_ps(x + i + 12));
  }
  double s[16];
  _mm256_storeu_pd(s, a0);
  _mm256_storeu_pd(s + 4, a1);
  _mm256_storeu_pd(s + 8, a2);
  _mm256_storeu_pd(s + 12, a3);
  return finishSq(s, x, i, n);
}

// Four vectors of 4 doubles: sums 0-15 (Note [Sixteen partial sums])
struct Sums16Avx2 {
  __m256d a[4];
};

TL_AVX2 inline void zeroAvx2(Sums16Avx2& s) {
  for (auto& v : s.a) v = _mm256_setzero_pd();
}

TL_AVX2 inline void storeAvx2(const Sums16Avx2& s, double* out) {
  for (int k = 0; k < 4; ++k) _mm256_storeu_pd(out + 4 * k, s.a[k]);
}

// s += x[i]² for i in [from, to) (multiples of 16), element i into sum i mod 16
TL_AVX2 inline void sqRangeAvx2(Sums16Avx2& s, const float* x, int64_t from, int64_t to) {
  __m256d a0 = s.a[0], a1 = s.a[1], a2 = s.a[2], a3 = s.a[3];
  for (int64_t i = from; i < to; i += 16) {
    a0 = sqAddAvx2(a0, _mm_loadu_ps(x + i));
    a1 = sqAddAvx2(a1, _mm_loadu_ps(x + i + 4));
    a2 = sqAddAvx2(a2, _mm_loadu_ps(x + i + 8));
    a3 = sqAddAvx2(a3, _mm_loadu_ps(x + i + 12));
  }
  s.a[0] = a0, s.a[1] = a1, s.a[2] = a2, s.a[3] = a3;
}

// s += x[i]² and t += y[i]² for i in [from, to) (multiples of 16): two chains of sums side by side
TL_AVX2 inline void sqRange2Avx2(Sums16Avx2& s, const float* x, Sums16Avx2& t, const float* y, int64_t from, int64_t to) {
  __m256d a0 = s.a[0], a1 = s.a[1], a2 = s.a[2], a3 = s.a[3], b0 = t.a[0], b1 = t.a[1], b2 = t.a[2], b3 = t.a[3];
  for (int64_t i = from; i < to; i += 16) {
    a0 = sqAddAvx2(a0, _mm_loadu_ps(x + i));
    b0 = sqAddAvx2(b0, _mm_loadu_ps(y + i));
    a1 = sqAddAvx2(a1, _mm_loadu_ps(x + i + 4));
    b1 = sqAddAvx2(b1, _mm_loadu_ps(y + i + 4));
    a2 = sqAddAvx2(a2, _mm_loadu_ps(x + i + 8));
    b2 = sqAddAvx2(b2, _mm_loadu_ps(y + i + 8));
    a3 = sqAddAvx2(a3, _mm_loadu_ps(x + i + 12));
    b3 = sqAddAvx2(b3, _mm_loadu_ps(y + i + 12));
  }
  s.a[0] = a0, s.a[1] = a1, s.a[2] = a2, s.a[3] = a3;
  t.a[0] = b0, t.a[1] = b1, t.a[2] = b2, t.a[3] = b3;
}

// The AVX2 loop runs over L1-sized chunks in two passes: Σ w² (and Σ g² of the g it was given) first, then
// g += λw with the new g's sum, so at most 8 accumulators are live and they stay in the 16 ymm registers (three sums
// in one loop spilled them to the stack and ran at half the speed: issue 16). Each sum still adds its elements in
// index order, so the bits are those of one loop (Note [Sixteen partial sums]); a chunk's second read is from L1.
TL_AVX2 void l2GradSumsAvx2(const float* w, float* g, int64_t n, float lambda, bool old, L2Sums* r) {
  constexpr int64_t kChunk = 1024;  // 4 KB of each array
  const __m256 L = _mm256_set1_ps(lambda);
  Sums16Avx2 sg, sw, so;
  zeroAvx2(sg), zeroAvx2(sw), zeroAvx2(so);
  const int64_t n16 = n / 16 * 16;
  for (int64_t c = 0; c < n16; c += kChunk) {
    const int64_t e = std::min(n16, c + kChunk);
    if (old)
      sqRange2Avx2(so, g, sw, w, c, e);
    else
      sqRangeAvx2(sw, w, c, e);
    __m256d g0 = sg.a[0], g1 = sg.a[1], g2 = sg.a[2], g3 = sg.a[3];
    for (int64_t i = c; i < e; i += 16) {
      const __m256 ga = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(L, _mm256_loadu_ps(w + i)));
      const __m256 gb = _mm256_add_ps(_mm256_loadu_ps(g + i + 8), _mm256_mul_ps(L, _mm256_loadu_ps(w + i + 8)));
      _mm256_storeu_ps(g + i, ga);
      _mm256_storeu_ps(g + i + 8, gb);
      g0 = sqAddAvx2(g0, _mm256_castps256_ps128(ga));
      g1 = sqAddAvx2(g1, _mm256_extractf128_ps(ga, 1));
      g2 = sqAddAvx2(g2, _mm256_castps256_ps128(gb));
      g3 = sqAddAvx2(g3, _mm256_extractf128_ps(gb, 1));
    }
    sg.a[0] = g0, sg.a[1] = g1, sg.a[2] = g2, sg.a[3] = g3;
  }
  double dg[16], dw[16], dold[16];
  storeAvx2(sg, dg), storeAvx2(sw, dw), storeAvx2(so, dold);
  finishL2(dg, dw, old ? dold : nullptr, w, g, n16, n, lambda, r);
}

// acc += (double)v² for 8 floats
TL_AVX512 inline __m512d sqAddAvx512(__m512d acc, __m256 v) {
  const __m512d d = _mm512_cvtps_pd(v);
  return _mm512_add_pd(acc, _mm512_mul_pd(d, d));
}

TL_AVX512 double sumSquaresAvx512(const float* x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = sqAddAvx512(a0, _mm256_loadu_ps(x + i));
    a1 = sqAddAvx512(a1, _mm256_loadu_ps(x + i + 8));
  }
  double s[16];
  _mm512_storeu_pd(s, a0);
  _mm512_storeu_pd(s + 8, a1);
  return finishSq(s, x, i, n);
}

// The upper 8 floats of v
TL_AVX512 inline __m256 hi(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// One loop: its six accumulators fit AVX-512's 32 registers.
TL_AVX512 void l2GradSumsAvx512(const float* w, float* g, int64_t n, float lambda, bool old, L2Sums* r) {
  const __m512 L = _mm512_set1_ps(lambda);
  __m512d g0 = _mm512_setzero_pd(), g1 = g0, w0 = g0, w1 = g0, o0 = g0, o1 = g0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 wv = _mm512_loadu_ps(w + i), ov = _mm512_loadu_ps(g + i);
    if (old) {
      o0 = sqAddAvx512(o0, _mm512_castps512_ps256(ov));
      o1 = sqAddAvx512(o1, hi(ov));
    }
    const __m512 gv = _mm512_add_ps(ov, _mm512_mul_ps(L, wv));
    _mm512_storeu_ps(g + i, gv);
    g0 = sqAddAvx512(g0, _mm512_castps512_ps256(gv));
    g1 = sqAddAvx512(g1, hi(gv));
    w0 = sqAddAvx512(w0, _mm512_castps512_ps256(wv));
    w1 = sqAddAvx512(w1, hi(wv));
  }
  double sg[16], sw[16], so[16];
  _mm512_storeu_pd(sg, g0);
  _mm512_storeu_pd(sg + 8, g1);
  _mm512_storeu_pd(sw, w0);
  _mm512_storeu_pd(sw + 8, w1);
  _mm512_storeu_pd(so, o0);
  _mm512_storeu_pd(so + 8, o1);
  finishL2(sg, sw, old ? so : nullptr, w, g, i, n, lambda, r);
}

#endif  // TL_ISA_X86

}  // namespace

double sumSquaresBlock(const float* x, int64_t n) {
#ifdef TL_ISA_X86
  switch (kernelIsa()) {
    case Isa::Avx512: return sumSquaresAvx512(x, n);
    case Isa::Avx2: return sumSquaresAvx2(x, n);
    case Isa::Scalar: break;
  }
#endif
  return sumSquaresScalar(x, n);
}

void l2GradSumsBlock(const float* w, float* g, int64_t n, float lambda, bool old, L2Sums* r) {
#ifdef TL_ISA_X86
  switch (kernelIsa()) {
    case Isa::Avx512: return l2GradSumsAvx512(w, g, n, lambda, old, r);
    case Isa::Avx2: return l2GradSumsAvx2(w, g, n, lambda, old, r);
    case Isa::Scalar: break;
  }
#endif
  l2GradSumsScalar(w, g, n, lambda, old, r);
}

constexpr int64_t kSumBlock = int64_t(1) << 15;  // a multiple of 16 (Note [Sixteen partial sums])

double sumSquares(const float* x, int64_t n) {
  if (n <= kSumBlock) return sumSquaresBlock(x, n);
  std::vector<double> part((size_t)((n + kSumBlock - 1) / kSumBlock));
  gemmForEach((int)part.size(), [&](int b) {
    const int64_t i = b * kSumBlock;
    part[(size_t)b] = sumSquaresBlock(x + i, std::min(kSumBlock, n - i));
  });
  double s = part[0];
  for (size_t b = 1; b < part.size(); ++b) s += part[b];
  return s;
}

void l2GradSums(const float* w, float* g, int64_t n, float lambda, double* sumG2, double* sumW2, double* sumOld2) {
  const size_t blocks = (size_t)std::max<int64_t>(1, (n + kSumBlock - 1) / kSumBlock);
  std::vector<L2Sums> part(blocks);
  const auto one = [&](int b) {
    const int64_t i = b * kSumBlock;
    l2GradSumsBlock(w + i, g + i, std::min(kSumBlock, n - i), lambda, sumOld2 != nullptr, &part[(size_t)b]);
  };
  if (blocks == 1)
    one(0);
  else
    gemmForEach((int)blocks, one);
  L2Sums t = part[0];
  for (size_t b = 1; b < blocks; ++b) {
    t.g2 += part[b].g2;
    t.w2 += part[b].w2;
    t.old2 += part[b].old2;
  }
  *sumG2 = t.g2;
  *sumW2 = t.w2;
  if (sumOld2) *sumOld2 = t.old2;
}

}  // namespace cpuk
}  // namespace tl
