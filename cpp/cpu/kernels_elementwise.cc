// CPU regularisation, norm and elementwise kernels: l2_loss, l2_backward, sum_squares, clip_by_norm, fill, scale, axpy, copy.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// Σx² in double, 16 independent partial sums so the loop vectorises and pipelines (a few partial sums would be
// latency-bound on the dependent double adds). With AVX2 + FMA, where the CPU has them, 4 doubles per op.
#define TL_SUMSQ_BODY                                                                \
  double s[16] = {0};                                                                \
  int64_t i = 0;                                                                     \
  for (; i + 16 <= n; i += 16)                                                       \
    for (int k = 0; k < 16; ++k) s[k] += (double)x[i + k] * (double)x[i + k];       \
  for (; i < n; ++i) s[i & 15] += (double)x[i] * (double)x[i];                       \
  for (int w = 8; w >= 1; w /= 2)                                                    \
    for (int k = 0; k < w; ++k) s[k] += s[k + w];                                    \
  return s[0];

static double sumSquaresGeneric(const float* x, int64_t n) { TL_SUMSQ_BODY }
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) static double sumSquaresAvx2(const float* x, int64_t n) { TL_SUMSQ_BODY }
static bool hasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
#undef TL_SUMSQ_BODY

static double sumSquaresFast(const float* x, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = hasAvx2Fma();
  if (avx2) return sumSquaresAvx2(x, n);
#endif
  return sumSquaresGeneric(x, n);
}

// in: w (N); out: loss (1), accumulates: loss += lambda·½·Σw²
TL_CPU_KERNEL(l2_loss) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const double lambda = a.coef;
  float* loss = c.out[0].f32();
  loss[0] = (float)((double)loss[0] + lambda * 0.5 * sumSquaresFast(c.in[0].f32(), N));
}

// in: w (N); out: g (N), in place: g += lambda·w
TL_CPU_KERNEL(l2_backward) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float lambda = (float)a.coef;
  const float* w = c.in[0].f32();
  float* g = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) g[i] += lambda * w[i];
}

// in: x (N); out: s (1), accumulates: s += Σx² (double)
TL_CPU_KERNEL(sum_squares) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  float* s = c.out[0].f32();
  s[0] = (float)((double)s[0] + sumSquaresFast(c.in[0].f32(), N));
}

// in: s (1) global squared norm; out: g (N), in place: g *= min(1, clipNorm/sqrt(s)); s = 0 leaves g unchanged
TL_CPU_KERNEL(clip_by_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const double clipNorm = a.coef;
  const double s = c.in[0].f32()[0];
  if (s == 0.0) return;
  const double f = clipNorm / std::sqrt(s);
  if (f >= 1.0) return;  // written so a NaN norm scales by NaN (surfacing the problem) instead of passing silently
  const float ff = (float)f;
  float* g = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) g[i] *= ff;
}

// out: x (N) = value
TL_CPU_KERNEL(fill) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float v = (float)a.coef;
  std::fill(c.out[0].f32(), c.out[0].f32() + N, v);
}

// out: x (N), in place: x *= factor
TL_CPU_KERNEL(scale) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float f = (float)a.coef;
  float* x = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) x[i] *= f;
}

// in: x (N); out: y (N), in place: y += alpha·x
TL_CPU_KERNEL(axpy) {
  const ElementwiseArgs& args = c.args<ElementwiseArgs>();
  const int64_t N = args.N;
  const float a = (float)args.coef;
  const float* x = c.in[0].f32();
  float* y = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) y[i] += a * x[i];
}

// in: x (N); out: y (N) = x, bit-exact (memmove: x and y may overlap)
TL_CPU_KERNEL(copy) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  if (N > 0) std::memmove(c.out[0].data, c.in[0].data, (size_t)N * sizeof(float));
}

}  // namespace cpuk
}  // namespace tl
