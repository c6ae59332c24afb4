// CPU optimizer kernels, in place on weights and slots: sgd_update, momentum_update, adam_update, ema_update, and
// the fused tail after the guard: fused_{sgd,momentum,adam}_update (clip, update and EMA in one pass; Note [Fused
// parameter tail] in src/model/passes.ts). Each update's element loop is written once and run on the process's ISA
// path (Note [Kernel ISA] in isa.h); a plain update is its fused loop with clipping and the EMA off, so the two
// give the same bits.
#include <cmath>

#include "isa.h"
#include "kernels_cpu.h"
#include "kernels_elementwise.h"

namespace tl {
namespace cpuk {

namespace {

// What the fused tail adds around an update (kClip: g *= clip, written back; kEma: shadow after the new w).
struct Tail {
  float clip = 1, decay = 0, oneMinusDecay = 0;
  float* shadow = nullptr;
};

template <bool kClip, bool kEma>
struct SgdLoop {
  TL_ISA_INLINE static void run(float* g, float* w, int64_t n, float lr, Tail t) {
    for (int64_t i = 0; i < n; ++i) {
      float gi = g[i];
      if (kClip) g[i] = gi = gi * t.clip;
      const float wi = w[i] - lr * gi;
      w[i] = wi;
      if (kEma) t.shadow[i] = t.decay * t.shadow[i] + t.oneMinusDecay * wi;
    }
  }
};

template <bool kClip, bool kEma>
struct MomentumLoop {
  TL_ISA_INLINE static void run(float* g, float* w, float* v, int64_t n, float lr, float m, bool nesterov, Tail t) {
    for (int64_t i = 0; i < n; ++i) {
      float gi = g[i];
      if (kClip) g[i] = gi = gi * t.clip;
      const float vi = m * v[i] + gi;
      v[i] = vi;
      const float wi = w[i] - (nesterov ? lr * (gi + m * vi) : lr * vi);
      w[i] = wi;
      if (kEma) t.shadow[i] = t.decay * t.shadow[i] + t.oneMinusDecay * wi;
    }
  }
};

struct AdamConsts {
  float lrt, b1, b2, ob1, ob2, eps;
};

template <bool kClip, bool kEma>
struct AdamLoop {
  TL_ISA_INLINE static void run(float* g, float* w, float* m, float* v, int64_t n, AdamConsts k, Tail t) {
    for (int64_t i = 0; i < n; ++i) {
      float gi = g[i];
      if (kClip) g[i] = gi = gi * t.clip;
      const float mi = k.b1 * m[i] + k.ob1 * gi;
      const float vi = k.b2 * v[i] + k.ob2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const float wi = w[i] - k.lrt * mi / (std::sqrt(vi) + k.eps);
      w[i] = wi;
      if (kEma) t.shadow[i] = t.decay * t.shadow[i] + t.oneMinusDecay * wi;
    }
  }
};

struct EmaLoop {
  TL_ISA_INLINE static void run(const float* w, float* s, int64_t n, float d, float od) {
    for (int64_t i = 0; i < n; ++i) s[i] = d * s[i] + od * w[i];
  }
};

// Runs Loop<clip, ema>::run(args...) on the ISA path, the template flags picked from the tail.
template <template <bool, bool> class Loop, class... A>
void runLoop(const Tail& t, bool clip, A... a) {
  const bool ema = t.shadow != nullptr;
  if (clip && ema) perIsa<Loop<true, true>>(a..., t);
  else if (clip) perIsa<Loop<true, false>>(a..., t);
  else if (ema) perIsa<Loop<false, true>>(a..., t);
  else perIsa<Loop<false, false>>(a..., t);
}

// Elements [0, n) in blocks over the device's GEMM threads (forEachRowBlock): f(i0, count, tail moved to i0). Each
// element's update reads and writes its own index only, so any thread count gives the same bits.
template <class F>
void overBlocks(int64_t n, const Tail& t, F f) {
  forEachRowBlock(n, 1, [&](int64_t i0, int64_t i1) {
    Tail tb = t;
    if (tb.shadow) tb.shadow += i0;
    f(i0, i1 - i0, tb);
  });
}

// The tail of a fused_*_update call: the clip factor from the global squared norm s (input 0), and the shadow, the
// output after the update's own `outputs` when the call has it.
Tail tailOf(const KernelCall& c, const TailArgs& a, size_t outputs, bool* clip) {
  Tail t;
  *clip = a.clipNorm > 0 && clipFactor(c.in[0].f32()[0], a.clipNorm, &t.clip);
  if (a.ema) {
    t.shadow = c.out[outputs].f32();
    t.decay = (float)a.decay;
    t.oneMinusDecay = (float)(1.0 - a.decay);
  }
  return t;
}

AdamConsts adamConsts(const KernelCall& c, const AdamArgs& a, const float* hyper) {
  const double b1 = a.beta1, b2 = a.beta2, lr = hyper[kHyperLr], t = hyper[kHyperStep];
  TL_KCHECK(c, t >= 1, "hyper[" << kHyperStep << "] (step t) must be >= 1 for " << c.op << ", got " << t);
  const float lrt = (float)(lr * std::sqrt(1.0 - std::pow(b2, t)) / (1.0 - std::pow(b1, t)));
  return {lrt, (float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), (float)a.epsilon};
}

}  // namespace

// in: g (N), hyper; out: w (N) -= lr·g
TL_CPU_KERNEL(sgd_update) {
  const int64_t N = c.args<SizeArgs>().N;
  float* g = c.in[0].f32();
  const float lr = c.in[1].f32()[kHyperLr];
  float* w = c.out[0].f32();
  overBlocks(N, Tail{}, [&](int64_t i, int64_t n, const Tail& t) { runLoop<SgdLoop>(t, false, g + i, w + i, n, lr); });
}

// in: g (N), hyper; out: w (N), v (N). v = m·v + g; w −= lr·v, or nesterov: w −= lr·(g + m·v)
TL_CPU_KERNEL(momentum_update) {
  const MomentumArgs& a = c.args<MomentumArgs>();
  float* g = c.in[0].f32();
  const float lr = c.in[1].f32()[kHyperLr];
  float *w = c.out[0].f32(), *v = c.out[1].f32();
  overBlocks(a.N, Tail{}, [&](int64_t i, int64_t n, const Tail& t) {
    runLoop<MomentumLoop>(t, false, g + i, w + i, v + i, n, lr, a.momentum, a.nesterov);
  });
}

// in: g (N), hyper; out: w (N), m (N), v (N). TF AdamOptimizer with bias correction folded into lr_t (double).
TL_CPU_KERNEL(adam_update) {
  const AdamArgs& a = c.args<AdamArgs>();
  const AdamConsts k = adamConsts(c, a, c.in[1].f32());
  float* g = c.in[0].f32();
  float *w = c.out[0].f32(), *m = c.out[1].f32(), *v = c.out[2].f32();
  overBlocks(a.N, Tail{}, [&](int64_t i, int64_t n, const Tail& t) {
    runLoop<AdamLoop>(t, false, g + i, w + i, m + i, v + i, n, k);
  });
}

// in: w (N); out: shadow (N) = decay·shadow + (1−decay)·w
TL_CPU_KERNEL(ema_update) {
  const EmaArgs& a = c.args<EmaArgs>();
  const float* w = c.in[0].f32();
  float* s = c.out[0].f32();
  forEachRowBlock(a.N, 1, [&](int64_t i0, int64_t i1) {
    perIsa<EmaLoop>(w + i0, s + i0, i1 - i0, (float)a.decay, (float)(1.0 - a.decay));
  });
}

// in: s (1), hyper; out: g (N), w (N) [, shadow (N)]
TL_CPU_KERNEL(fused_sgd_update) {
  const FusedSgdArgs& a = c.args<FusedSgdArgs>();
  bool clip;
  const Tail t = tailOf(c, a.tail, 2, &clip);
  float *g = c.out[0].f32(), *w = c.out[1].f32();
  const float lr = c.in[1].f32()[kHyperLr];
  overBlocks(a.N, t, [&](int64_t i, int64_t n, const Tail& tb) { runLoop<SgdLoop>(tb, clip, g + i, w + i, n, lr); });
}

// in: s (1), hyper; out: g (N), w (N), v (N) [, shadow (N)]
TL_CPU_KERNEL(fused_momentum_update) {
  const FusedMomentumArgs& a = c.args<FusedMomentumArgs>();
  bool clip;
  const Tail t = tailOf(c, a.tail, 3, &clip);
  float *g = c.out[0].f32(), *w = c.out[1].f32(), *v = c.out[2].f32();
  const float lr = c.in[1].f32()[kHyperLr];
  overBlocks(a.N, t, [&](int64_t i, int64_t n, const Tail& tb) {
    runLoop<MomentumLoop>(tb, clip, g + i, w + i, v + i, n, lr, a.momentum, a.nesterov);
  });
}

// in: s (1), hyper; out: g (N), w (N), m (N), v (N) [, shadow (N)]
TL_CPU_KERNEL(fused_adam_update) {
  const FusedAdamArgs& a = c.args<FusedAdamArgs>();
  const AdamConsts k = adamConsts(c, a, c.in[1].f32());
  bool clip;
  const Tail t = tailOf(c, a.tail, 4, &clip);
  float *g = c.out[0].f32(), *w = c.out[1].f32(), *m = c.out[2].f32(), *v = c.out[3].f32();
  overBlocks(a.N, t, [&](int64_t i, int64_t n, const Tail& tb) {
    runLoop<AdamLoop>(tb, clip, g + i, w + i, m + i, v + i, n, k);
  });
}

}  // namespace cpuk
}  // namespace tl
