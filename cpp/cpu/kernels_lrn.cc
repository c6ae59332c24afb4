// CPU local response normalisation over the channels of NHWC rows (TF's tf.nn.lrn): lrn_forward, lrn_backward. The
// loops run across a row's channels on the process's ISA path (Note [Kernel ISA] in isa.h).
#include <cmath>
#include <vector>

#include "isa.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

namespace {

// Note [LRN window sums]: the window sum win[c] = Σ_{|c'−c| <= r} v[c'] is taken as Σ_{j = 0..2r} pad[c + j] over
// pad = v with r zeros on each side, j outermost: the same additions in the same order for every channel on every
// ISA path, and loops across channels that vectorise (a window slid along the row is one serial chain of dependent
// adds and subtractions). Adding the +0.0 padding changes no sum: every sum starts at +0.0.

// s^(−beta), the common exponents by square roots (CIFAR-10's beta is 0.75).
enum class PowKind { ThreeQuarters, Half, One, General };

PowKind powKind(double beta) {
  if (beta == 0.75) return PowKind::ThreeQuarters;
  if (beta == 0.5) return PowKind::Half;
  if (beta == 1.0) return PowKind::One;
  return PowKind::General;
}

TL_ISA_INLINE void powNeg(const double* __restrict__ s, double* __restrict__ out, int64_t n, PowKind k, double beta) {
  switch (k) {
    case PowKind::ThreeQuarters:
      for (int64_t i = 0; i < n; ++i) {
        const double q = std::sqrt(s[i]);
        out[i] = 1.0 / (q * std::sqrt(q));
      }
      break;
    case PowKind::Half:
      for (int64_t i = 0; i < n; ++i) out[i] = 1.0 / std::sqrt(s[i]);
      break;
    case PowKind::One:
      for (int64_t i = 0; i < n; ++i) out[i] = 1.0 / s[i];
      break;
    case PowKind::General:
      for (int64_t i = 0; i < n; ++i) out[i] = std::pow(s[i], -beta);
      break;
  }
}

// win (C) = the window sums of pad (C + 2r), Note [LRN window sums]
TL_ISA_INLINE void windowSums(const double* __restrict__ pad, double* __restrict__ win, int64_t C, int64_t r) {
  for (int64_t c = 0; c < C; ++c) win[c] = 0.0;
  for (int64_t j = 0; j <= 2 * r; ++j)
    for (int64_t c = 0; c < C; ++c) win[c] += pad[c + j];
}

// Scratch for one row: pad (C + 2r, its ends zero), win, s, pw (C each).
struct Row {
  std::vector<double> buf;
  double *pad, *win, *s, *pw;
  Row(int64_t C, int64_t r) : buf((size_t)(4 * C + 2 * r), 0.0) {
    pad = buf.data();
    win = pad + C + 2 * r;
    s = win + C;
    pw = s + C;
  }
};

struct LrnForward {
  // x (N,C) -> y (N,C), sc (N,C)
  TL_ISA_INLINE static void run(const float* x, float* y, float* sc, int64_t rows, const LrnArgs* a, PowKind k, Row* w) {
    const int64_t C = a->C, r = a->r;
    const double bias = a->bias, alpha = a->alpha;
    double *__restrict__ pad = w->pad, *__restrict__ win = w->win, *__restrict__ sv = w->s, *__restrict__ pw = w->pw;
    for (int64_t row = 0; row < rows; ++row) {
      const float* __restrict__ xr = x + row * C;
      float* __restrict__ yr = y + row * C;
      float* __restrict__ sr = sc + row * C;
      for (int64_t c = 0; c < C; ++c) pad[r + c] = (double)xr[c] * (double)xr[c];
      windowSums(pad, win, C, r);
      for (int64_t c = 0; c < C; ++c) {
        sv[c] = bias + alpha * win[c];
        sr[c] = (float)sv[c];
      }
      powNeg(sv, pw, C, k, a->beta);
      for (int64_t c = 0; c < C; ++c) yr[c] = (float)((double)xr[c] * pw[c]);
    }
  }
};

struct LrnBackward {
  // x, y, dy, sc (N,C) -> dx (N,C)
  TL_ISA_INLINE static void run(const float* x, const float* y, const float* dy, const float* sc, float* dx,
                                int64_t rows, const LrnArgs* a, PowKind k, Row* w) {
    const int64_t C = a->C, r = a->r;
    const double k2ab = 2.0 * a->alpha * a->beta;
    double *__restrict__ pad = w->pad, *__restrict__ win = w->win, *__restrict__ sv = w->s, *__restrict__ pw = w->pw;
    for (int64_t row = 0; row < rows; ++row) {
      const float *__restrict__ xr = x + row * C, *__restrict__ yr = y + row * C, *__restrict__ dyr = dy + row * C,
                  *__restrict__ sr = sc + row * C;
      float* __restrict__ dxr = dx + row * C;
      for (int64_t c = 0; c < C; ++c) pad[r + c] = (double)dyr[c] * (double)yr[c] / (double)sr[c];
      windowSums(pad, win, C, r);
      for (int64_t c = 0; c < C; ++c) sv[c] = (double)sr[c];
      powNeg(sv, pw, C, k, a->beta);
      for (int64_t c = 0; c < C; ++c) dxr[c] = (float)((double)dyr[c] * pw[c] - k2ab * (double)xr[c] * win[c]);
    }
  }
};

}  // namespace

// in: x (N,C); out: y (N,C), scale (N,C) = bias + alpha·Σ_{|c'−c| <= r} x[c']² (TF's tf.nn.lrn), y = x·scale^(−beta)
TL_CPU_KERNEL(lrn_forward) {
  const LrnArgs& a = c.args<LrnArgs>();
  const float* x = c.in[0].f32();
  float *y = c.out[0].f32(), *sc = c.out[1].f32();
  forEachRowBlock(a.N, a.C, [&](int64_t r0, int64_t r1) {  // rows are independent: any cut gives the same bits
    Row w(a.C, a.r);
    perIsa<LrnForward>(x + r0 * a.C, y + r0 * a.C, sc + r0 * a.C, r1 - r0, &a, powKind(a.beta), &w);
  });
}

// in: x, y, dy, scale (N,C); out: dx (N,C) = dy·scale^(−beta) − 2·alpha·beta·x·Σ_{|c−j| <= r} dy[c]·y[c]/scale[c]
TL_CPU_KERNEL(lrn_backward) {
  const LrnArgs& a = c.args<LrnArgs>();
  const float *x = c.in[0].f32(), *y = c.in[1].f32(), *dy = c.in[2].f32(), *sc = c.in[3].f32();
  float* dx = c.out[0].f32();
  forEachRowBlock(a.N, a.C, [&](int64_t r0, int64_t r1) {
    Row w(a.C, a.r);
    const int64_t o = r0 * a.C;
    perIsa<LrnBackward>(x + o, y + o, dy + o, sc + o, dx + o, r1 - r0, &a, powKind(a.beta), &w);
  });
}

}  // namespace cpuk
}  // namespace tl
