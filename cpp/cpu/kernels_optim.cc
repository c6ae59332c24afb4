// CPU optimizer kernels, in place on weights and slots: sgd_update, momentum_update, adam_update, ema_update.
#include <cmath>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// in: g (N), hyper; out: w (N) -= lr·g
TL_CPU_KERNEL(sgd_update) {
  const int64_t N = c.args<SizeArgs>().N;
  const float lr = c.in[1].f32()[kHyperLr];
  const float* g = c.in[0].f32();
  float* w = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) w[i] -= lr * g[i];
}

// in: g (N), hyper; out: w (N), v (N). v = m·v + g; w −= lr·v, or nesterov: w −= lr·(g + m·v)
TL_CPU_KERNEL(momentum_update) {
  const MomentumArgs& a = c.args<MomentumArgs>();
  const int64_t N = a.N;
  const float m = a.momentum;
  const float lr = c.in[1].f32()[kHyperLr];
  const float* g = c.in[0].f32();
  float *w = c.out[0].f32(), *v = c.out[1].f32();
  if (a.nesterov) {
    for (int64_t i = 0; i < N; ++i) {
      const float vi = m * v[i] + g[i];
      v[i] = vi;
      w[i] -= lr * (g[i] + m * vi);
    }
  } else {
    for (int64_t i = 0; i < N; ++i) {
      const float vi = m * v[i] + g[i];
      v[i] = vi;
      w[i] -= lr * vi;
    }
  }
}

// in: g (N), hyper; out: w (N), m (N), v (N). TF AdamOptimizer with bias correction folded into lr_t (double).
TL_CPU_KERNEL(adam_update) {
  const AdamArgs& a = c.args<AdamArgs>();
  const int64_t N = a.N;
  const double b1 = a.beta1, b2 = a.beta2, eps = a.epsilon;
  const double lr = c.in[1].f32()[kHyperLr], t = c.in[1].f32()[kHyperStep];
  TL_KCHECK(c, t >= 1, "hyper[" << kHyperStep << "] (step t) must be >= 1 for adam_update, got " << t);
  const float lrt = (float)(lr * std::sqrt(1.0 - std::pow(b2, t)) / (1.0 - std::pow(b1, t)));
  const float fb1 = (float)b1, fb2 = (float)b2, fe = (float)eps;
  const float ob1 = (float)(1.0 - b1), ob2 = (float)(1.0 - b2);
  const float* g = c.in[0].f32();
  float *w = c.out[0].f32(), *m = c.out[1].f32(), *v = c.out[2].f32();
  for (int64_t i = 0; i < N; ++i) {
    const float gi = g[i];
    const float mi = fb1 * m[i] + ob1 * gi;
    const float vi = fb2 * v[i] + ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lrt * mi / (std::sqrt(vi) + fe);
  }
}

// in: w (N); out: shadow (N) = decay·shadow + (1−decay)·w
TL_CPU_KERNEL(ema_update) {
  const EmaArgs& a = c.args<EmaArgs>();
  const int64_t N = a.N;
  const double decay = a.decay;
  const float d = (float)decay, od = (float)(1.0 - decay);
  const float* w = c.in[0].f32();
  float* s = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) s[i] = d * s[i] + od * w[i];
}

}  // namespace cpuk
}  // namespace tl
