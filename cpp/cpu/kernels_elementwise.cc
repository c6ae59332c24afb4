// CPU regularisation, norm and elementwise kernels: l2_loss, l2_backward, sum_squares, clip_by_norm, fill, scale,
// axpy, copy. The loops run on the process's ISA path (Note [Kernel ISA] in isa.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "isa.h"
#include "kernels_cpu.h"
#include "kernels_elementwise.h"
#include "kernels_sums.h"

namespace tl {
namespace cpuk {

namespace {

// y (n) += a·x (n)
struct Axpy {
  TL_ISA_INLINE static void run(const float* x, float* y, int64_t n, float a) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
};

// x (n) *= f
struct Scale {
  TL_ISA_INLINE static void run(float* x, int64_t n, float f) {
    for (int64_t i = 0; i < n; ++i) x[i] *= f;
  }
};

}  // namespace

// The factor clip_by_norm scales by (1 when it leaves g alone), shared with the fused updates (kernels_optim.cc).
bool clipFactor(double s, double clipNorm, float* factor) {
  if (s == 0.0) return false;
  const double f = clipNorm / std::sqrt(s);
  if (f >= 1.0) return false;  // written so a NaN norm scales by NaN (surfacing the problem) instead of passing silently
  *factor = (float)f;
  return true;
}

// in: w (N); out: loss (1), accumulates: loss += lambda·½·Σw²
TL_CPU_KERNEL(l2_loss) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  float* loss = c.out[0].f32();
  loss[0] = (float)((double)loss[0] + a.coef * 0.5 * sumSquares(c.in[0].f32(), a.N));
}

// in: w (N); out: g (N), in place: g += lambda·w
TL_CPU_KERNEL(l2_backward) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  perIsa<Axpy>(c.in[0].f32(), c.out[0].f32(), a.N, (float)a.coef);
}

// in: x (N); out: s (1), accumulates: s += Σx² (double)
TL_CPU_KERNEL(sum_squares) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  float* s = c.out[0].f32();
  s[0] = (float)((double)s[0] + sumSquares(c.in[0].f32(), N));
}

// in: w (N); out: g (N) in place g += lambda·w, s (1) += Σg² of the new g, loss (1) += lambda·½·Σw²: l2_backward,
// sum_squares and l2_loss in one pass, their bits (Note [Sixteen partial sums]).
// With a 4th output local (1): local += Σg² of the incoming g, as a sum_squares on g before this kernel would.
TL_CPU_KERNEL(l2_grad_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const bool withLocal = c.out.size() > 3;
  double g2 = 0, w2 = 0, old2 = 0;
  l2GradSums(c.in[0].f32(), c.out[0].f32(), a.N, (float)a.coef, &g2, &w2, withLocal ? &old2 : nullptr);
  float *s = c.out[1].f32(), *loss = c.out[2].f32();
  s[0] = (float)((double)s[0] + g2);
  loss[0] = (float)((double)loss[0] + a.coef * 0.5 * w2);
  if (withLocal) c.out[3].f32()[0] = (float)((double)c.out[3].f32()[0] + old2);
}

// in: s (1) global squared norm; out: g (N), in place: g *= min(1, clipNorm/sqrt(s)); s = 0 leaves g unchanged
TL_CPU_KERNEL(clip_by_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  float f;
  if (clipFactor(c.in[0].f32()[0], a.coef, &f)) perIsa<Scale>(c.out[0].f32(), a.N, f);
}

// out: x (N) = value
TL_CPU_KERNEL(fill) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  std::fill(c.out[0].f32(), c.out[0].f32() + a.N, (float)a.coef);
}

// out: x (N), in place: x *= factor
TL_CPU_KERNEL(scale) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  perIsa<Scale>(c.out[0].f32(), a.N, (float)a.coef);
}

// in: x (N); out: y (N), in place: y += alpha·x
TL_CPU_KERNEL(axpy) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  perIsa<Axpy>(c.in[0].f32(), c.out[0].f32(), a.N, (float)a.coef);
}

// in: x (N); out: y (N) = x, bit-exact (memmove: x and y may overlap)
TL_CPU_KERNEL(copy) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  if (N > 0) std::memmove(c.out[0].data, c.in[0].data, (size_t)N * sizeof(float));
}

}  // namespace cpuk
}  // namespace tl
