// CPU layer kernels: dense, activations, softmax cross-entropy, mean loss, accuracy (see docs/kernels.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "isa.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

namespace {

// The element loops below run on the ISA path (Note [Kernel ISA] in isa.h).

// s (O) += every row of dy (B,O), in double: the bias gradient's column sums, each column in row order.
struct ColumnSums {
  TL_ISA_INLINE static void run(const float* dy, double* s, int64_t B, int64_t O) {
    for (int64_t r = 0; r < B; ++r) {
      const float* row = dy + r * O;
      for (int64_t o = 0; o < O; ++o) s[o] += row[o];
    }
  }
};

// An activation's forward, y = f(x) elementwise; y may be x (Note [In-place activation]), which gets its own loop:
// a loop that may store into what it loads does not vectorise.
template <class F>
TL_ISA_INLINE void activationForward(const float* x, float* y, int64_t n, F f) {
  if (x == y)
    for (int64_t i = 0; i < n; ++i) y[i] = f(y[i]);
  else
    for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

// y = max(x, 0) written as a select, so a NaN propagates
struct Relu {
  TL_ISA_INLINE static void run(const float* x, float* y, int64_t n) {
    activationForward(x, y, n, [](float v) __attribute__((always_inline)) { return v < 0.f ? 0.f : v; });
  }
};

// The activations' backward, dx = f(y, dy) elementwise; dx may be dy (the in-place activations of Note [In-place
// activation]), which gets its own loop: a loop that may store into what it loads does not vectorise.
template <class F>
TL_ISA_INLINE void activationBackward(const float* y, const float* dy, float* dx, int64_t n, F f) {
  if (dx == dy)
    for (int64_t i = 0; i < n; ++i) dx[i] = f(y[i], dx[i]);
  else
    for (int64_t i = 0; i < n; ++i) dx[i] = f(y[i], dy[i]);
}

// dx = dy where y > 0, else 0: a branch-free select with unconditional loads, so it vectorises (a branch on y > 0
// mispredicts about half the time on real activations: ~190 us for 128x500 against ~10 us for the select).
struct ReluBackward {
  TL_ISA_INLINE static void run(const float* y, const float* dy, float* dx, int64_t n) {
    activationBackward(y, dy, dx, n, [](float yi, float d) __attribute__((always_inline)) { return yi > 0.f ? d : 0.f; });
  }
};

// Note [Vector exp]: e^x for x <= 0 in plain float operations, so the loops that call it vectorise on every ISA path
// and give the same bits on each (Note [Kernel ISA]; libm's expf is a call per element): x = k·ln2 + r with k an
// integer and |r| <= ln2/2 (Cody-Waite: ln2 in a high part exact in 9 bits, k·ln2_hi exact, and a low part), e^r by
// its Taylor polynomial to degree 7 (error < 2e-8 relative for |r| <= 0.347), times 2^k built in the exponent bits.
// Below −87 the input is clamped (e^−87 ≈ 1.6e-38, the result stays a normal float); NaN gives NaN.
TL_ISA_INLINE float expNonPositive(float x) {
  const float xc = x < -87.f ? -87.f : x;
  const int k = (int)(xc * 1.44269504f - 0.5f);  // ceil(t − ½) for t = x·log2(e) <= 0: t − k in (−½, ½]
  const float kf = (float)k;
  const float r = (xc - kf * 0.693359375f) - kf * -2.12194440e-4f;
  float p = 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (int32_t)((uint32_t)(k + 127) << 23);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// y = 1/(1+e^−x), from e = e^−|x| (expNonPositive) for either sign, so nothing overflows
struct Sigmoid {
  TL_ISA_INLINE static void run(const float* x, float* y, int64_t n) {
    activationForward(x, y, n, [](float v) __attribute__((always_inline)) {
      const float e = expNonPositive(v < 0.f ? v : -v);
      return (v >= 0.f ? 1.f : e) / (1.f + e);  // one division, after the select: a division is not if-converted
    });
  }
};

struct SigmoidBackward {  // dx = dy·y·(1−y)
  TL_ISA_INLINE static void run(const float* y, const float* dy, float* dx, int64_t n) {
    activationBackward(y, dy, dx, n, [](float yi, float d) __attribute__((always_inline)) { return d * yi * (1.f - yi); });
  }
};

struct TanhBackward {  // dx = dy·(1−y²)
  TL_ISA_INLINE static void run(const float* y, const float* dy, float* dx, int64_t n) {
    activationBackward(y, dy, dx, n, [](float yi, float d) __attribute__((always_inline)) { return d * (1.f - yi * yi); });
  }
};

}  // namespace

// in: x (B,I), W (I,O), b (O); out: y (B,O). y = x·W + b
TL_CPU_KERNEL(dense_forward) {
  const DenseArgs& a = c.args<DenseArgs>();
  const int64_t B = a.B, O = a.O;
  const int iB = a.iB, iI = a.iI, iO = a.iO;
  const TensorRef &x = c.in[0], &W = c.in[1], &b = c.in[2], &y = c.out[0];
  float* py = y.f32();
  const float* pb = b.f32();
  // Seed every row with the bias, then accumulate x·W on top (beta = 1).
  for (int64_t r = 0; r < B; ++r) std::copy(pb, pb + O, py + r * O);
  sgemm(false, false, iB, iO, iI, 1.f, x.f32(), std::max(iI, 1), W.f32(), std::max(iO, 1), 1.f, py, std::max(iO, 1));
}

// in: x (B,I), W (I,O), dy (B,O); out: dW (I,O), db (O) [, dx (B,I)].
TL_CPU_KERNEL(dense_backward) {
  const DenseBackwardArgs& a = c.args<DenseBackwardArgs>();
  const int64_t B = a.B, O = a.O;
  const int iB = a.iB, iI = a.iI, iO = a.iO;
  const bool acc = a.acc, wantDx = a.wantDx;
  const TensorRef &x = c.in[0], &W = c.in[1], &dy = c.in[2], &dW = c.out[0], &db = c.out[1];
  const int ldI = std::max(iI, 1), ldO = std::max(iO, 1);
  // dW (I,O) = xᵀ (I,B) · dy (B,O) and dx (B,I) = dy (B,O) · Wᵀ (O,I): one job for the GEMM threads when both are
  // wanted (sgemmMany: a layer's two products too small to cut, like MNIST's 500x10 classifier, run side by side;
  // each product's bits are as when computed alone). They write different buffers and read only x, W and dy.
  const GemmCall dWCall{true, false, iI, iO, iB, 1.f, x.f32(), ldI, dy.f32(), ldO, acc ? 1.f : 0.f, dW.f32(), ldO};
  if (a.wantDw && wantDx) {
    const GemmCall both[2] = {dWCall, {false, true, iB, iI, iO, 1.f, dy.f32(), ldO, W.f32(), ldO, 0.f, c.out[2].f32(), ldI}};
    sgemmMany(both, 2);
  } else if (a.wantDw) {
    sgemmMany(&dWCall, 1);
  } else if (wantDx) {
    sgemm(false, true, iB, iI, iO, 1.f, dy.f32(), ldO, W.f32(), ldO, 0.f, c.out[2].f32(), ldI);
  }
  // db (O) = column sums of dy, in double across the batch
  {
    std::vector<double> s(O, 0.0);
    perIsa<ColumnSums>(static_cast<const float*>(dy.f32()), s.data(), B, O);
    float* pdb = db.f32();
    for (int64_t o = 0; o < O; ++o) pdb[o] = acc ? (float)((double)pdb[o] + s[o]) : (float)s[o];
  }
}

// in: A (M,K) [or (K,M) with transA], B (K,N) [or (N,K) with transB]; out: C (M,N) = op(A)·op(B)
TL_CPU_KERNEL(matmul) {
  const MatmulArgs& a = c.args<MatmulArgs>();
  const int lda = std::max(a.transA ? a.M : a.K, 1), ldb = std::max(a.transB ? a.K : a.N, 1);
  sgemm(a.transA, a.transB, a.M, a.N, a.K, 1.f, c.in[0].f32(), lda, c.in[1].f32(), ldb, 0.f, c.out[0].f32(),
        std::max(a.N, 1));
}

// x (N) -> y (N): y = max(x, 0) (NaN propagates)
TL_CPU_KERNEL(relu_forward) {
  const float* x = c.in[0].f32();
  float* y = c.out[0].f32();
  forEachRowBlock(c.args<SizeArgs>().N, 1, [&](int64_t i, int64_t e) { perIsa<Relu>(x + i, y + i, e - i); });
}

// y (N), dy (N) -> dx (N); dx may alias dy
TL_CPU_KERNEL(relu_backward) {
  const float *y = c.in[0].f32(), *dy = c.in[1].f32();
  float* dx = c.out[0].f32();
  forEachRowBlock(c.args<SizeArgs>().N, 1, [&](int64_t i, int64_t e) { perIsa<ReluBackward>(y + i, dy + i, dx + i, e - i); });
}

// x (N) -> y (N); exp of a non-positive number only (expNonPositive), so no overflow for large |x|
TL_CPU_KERNEL(sigmoid_forward) {
  const float* x = c.in[0].f32();
  float* y = c.out[0].f32();
  forEachRowBlock(c.args<SizeArgs>().N, 1, [&](int64_t i, int64_t e) { perIsa<Sigmoid>(x + i, y + i, e - i); });
}

// y (N), dy (N) -> dx (N) = dy·y·(1−y); dx may alias dy
TL_CPU_KERNEL(sigmoid_backward) {
  const float *y = c.in[0].f32(), *dy = c.in[1].f32();
  float* dx = c.out[0].f32();
  forEachRowBlock(c.args<SizeArgs>().N, 1, [&](int64_t i, int64_t e) { perIsa<SigmoidBackward>(y + i, dy + i, dx + i, e - i); });
}

TL_CPU_KERNEL(tanh_forward) {
  const int64_t N = c.args<SizeArgs>().N;
  const float* x = c.in[0].f32();
  float* y = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) y[i] = std::tanh(x[i]);
}

// y (N), dy (N) -> dx (N) = dy·(1−y²); dx may alias dy
TL_CPU_KERNEL(tanh_backward) {
  perIsa<TanhBackward>(static_cast<const float*>(c.in[0].f32()), static_cast<const float*>(c.in[1].f32()),
                       c.out[0].f32(), c.args<SizeArgs>().N);
}

// in: logits (B,C), labels (B), hyper; out: loss (1), probs (B,C)
TL_CPU_KERNEL(softmax_xent_forward) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t B = a.B, C = a.C;
  const TensorRef &logits = c.in[0], &loss = c.out[0], &probs = c.out[1];
  checkIndices(c, a.labels);
  const int32_t* lab = a.labels.values(c);
  const double w = c.in[2].f32()[kHyperGradScale];
  double total = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    const float* x = logits.f32() + r * C;
    float* p = probs.f32() + r * C;
    const float xl = x[lab[r]];  // read before p is written, in case probs aliases logits
    float mx = x[0];
    for (int64_t j = 1; j < C; ++j) mx = std::max(mx, x[j]);
    double s = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      p[j] = std::exp(x[j] - mx);
      s += p[j];
    }
    const float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < C; ++j) p[j] *= inv;
    total += ((double)mx + std::log(s)) - (double)xl;  // logsumexp − logit[label]
  }
  loss.f32()[0] = (float)(w * total);
}

// in: probs (B,C), labels (B), hyper; out: dlogits (B,C) = gradScale·(probs − onehot)
TL_CPU_KERNEL(softmax_xent_backward) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t B = a.B, C = a.C;
  const TensorRef &probs = c.in[0], &dl = c.out[0];
  checkIndices(c, a.labels);
  const int32_t* lab = a.labels.values(c);
  const float w = c.in[2].f32()[kHyperGradScale];
  for (int64_t r = 0; r < B; ++r) {
    const float* p = probs.f32() + r * C;
    float* d = dl.f32() + r * C;
    const int32_t l = lab[r];
    for (int64_t j = 0; j < C; ++j) d[j] = w * (p[j] - (j == l ? 1.f : 0.f));
  }
}

// in: x (B,C), hyper; out: loss (1) = gradScale·Σ x / C
TL_CPU_KERNEL(mean_forward) {
  const MeanArgs& a = c.args<MeanArgs>();
  const int64_t B = a.B, C = a.C;
  const float* x = c.in[0].f32();
  const int64_t n = B * C;
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += x[i + k];
  for (; i < n; ++i) s[0] += x[i];
  c.out[0].f32()[0] = (float)((double)c.in[1].f32()[kHyperGradScale] * ((s[0] + s[1]) + (s[2] + s[3])) / (double)C);
}

// in: hyper; out: dx (B,C) = gradScale / C
TL_CPU_KERNEL(mean_backward) {
  const MeanArgs& a = c.args<MeanArgs>();
  const int64_t B = a.B, C = a.C;
  const float v = (float)((double)c.in[0].f32()[kHyperGradScale] / (double)C);
  std::fill(c.out[0].f32(), c.out[0].f32() + B * C, v);
}

// in: logits (B,C), labels (B); out: count (1) f32 = rows whose first argmax equals the label
TL_CPU_KERNEL(accuracy_count) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t B = a.B, C = a.C;
  checkIndices(c, a.labels);
  const int32_t* lab = a.labels.values(c);
  int64_t n = 0;
  for (int64_t r = 0; r < B; ++r) {
    const float* x = c.in[0].f32() + r * C;
    int64_t best = 0;
    for (int64_t j = 1; j < C; ++j)
      if (x[j] > x[best]) best = j;  // strict: the first maximum wins ties
    n += best == lab[r];
  }
  c.out[0].f32()[0] = (float)n;
}

}  // namespace cpuk
}  // namespace tl
