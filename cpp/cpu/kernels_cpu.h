// Shared helpers for the CPU kernel files: checked shape arithmetic, hyper access, and per-file registration.
#pragma once
#include <climits>
#include <cmath>
#include <cstdint>

#include "../kernel.h"

namespace tl {
namespace cpuk {

// Attribute reads that, unlike Attrs::get/dim, prefix errors with the op and device (TL_KCHECK context).
inline double attr(const KernelCall& c, const char* k) {
  TL_KCHECK(c, c.attrs.has(k), "missing attribute '" << k << "'; pass it in the op's attrs");
  return c.attrs.get(k);
}
inline double attr(const KernelCall& c, const char* k, double dflt) { return c.attrs.get(k, dflt); }
inline int64_t dim(const KernelCall& c, const char* k) {
  const double v = attr(c, k);
  TL_KCHECK(c, std::isfinite(v) && v >= 0 && std::floor(v) == v && v < 9.0e15,
            "attribute '" << k << "' must be a non-negative integer, got " << v);
  return static_cast<int64_t>(v);
}

// a*b for shape products; throws instead of overflowing on absurd attributes.
inline int64_t mul(const KernelCall& c, int64_t a, int64_t b) {
  TL_KCHECK(c, b == 0 || a <= INT64_MAX / b, "shape product " << a << " x " << b << " overflows");
  return a * b;
}

// GEMM dimensions are int; reject attributes beyond that rather than truncating.
inline int gemmDim(const KernelCall& c, int64_t v, const char* name) {
  TL_KCHECK(c, v <= INT_MAX, "attribute " << name << "=" << v << " is too large for this backend (max " << INT_MAX << ")");
  return static_cast<int>(v);
}

// hyper holds [lr, t, shard weight]; every kernel reading it requires all 3 slots.
constexpr int64_t kHyperSlots = 3;
inline void expectHyper(const KernelCall& c, const TensorRef& h) {
  c.expectType(h, "hyper", DType::F32);
  c.expectSize(h, "hyper", kHyperSlots, "(3)");
}

// Validates that every label/index in idx[0..n) lies in [0, limit) before any output is written.
inline void checkIndices(const KernelCall& c, const int32_t* idx, int64_t n, int64_t limit, const char* what,
                         const char* row, const char* range) {
  for (int64_t i = 0; i < n; ++i)
    TL_KCHECK(c, idx[i] >= 0 && idx[i] < limit,
              what << " at " << row << "=" << i << " is " << idx[i] << ", outside [0, " << range << "=" << limit << ")");
}

// Sum of squares in double with independent partial sums (precision for long vectors, and some ILP).
inline double sumSquares(const float* x, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += (double)x[i + k] * (double)x[i + k];
  for (; i < n; ++i) s[0] += (double)x[i] * (double)x[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// ---- convolution / pooling geometry (NHWC) ------------------------------------------------------------------------
// Shared by the CPU and CUDA conv/pool kernels so both read and check the attributes alike (docs/kernels.md).

// One spatial dimension. padding 0 = VALID: out = ceil((in − k + 1)/s), needs in >= k, no padding. padding 1 = SAME
// (TF's rule): out = ceil(in/s), padTotal = max((out − 1)·s + k − in, 0), padBefore = floor(padTotal/2).
// Returns false (VALID with in < k) when no output size exists.
inline bool spatialOut(int64_t in, int64_t k, int64_t s, bool same, int64_t* out, int64_t* padBefore) {
  if (same) {
    *out = (in + s - 1) / s;
    const int64_t total = (*out - 1) * s + k - in;
    *padBefore = *out > 0 && total > 0 ? total / 2 : 0;
    return true;
  }
  *padBefore = 0;
  if (in < k) return false;
  *out = (in - k) / s + 1;
  return true;
}

struct ConvGeom {
  int64_t B, H, W, C, KH, KW, SH, SW, OH, OW, padTop, padLeft;
  bool same;
  int64_t inNumel() const { return B * H * W * C; }
  int64_t outRows() const { return B * OH * OW; }  // output positions (b, oh, ow)
};

// Reads B,H,W,C,KH,KW,SH,SW,padding,OH,OW and checks OH/OW against the padding rule.
inline ConvGeom convGeom(const KernelCall& c) {
  ConvGeom g;
  g.B = dim(c, "B"); g.H = dim(c, "H"); g.W = dim(c, "W"); g.C = dim(c, "C");
  g.KH = dim(c, "KH"); g.KW = dim(c, "KW"); g.SH = dim(c, "SH"); g.SW = dim(c, "SW");
  g.OH = dim(c, "OH"); g.OW = dim(c, "OW");
  const double pad = attr(c, "padding");
  TL_KCHECK(c, pad == 0 || pad == 1, "attribute padding must be 0 (VALID) or 1 (SAME), got " << pad);
  g.same = pad == 1;
  TL_KCHECK(c, g.KH >= 1 && g.KW >= 1, "window KH=" << g.KH << " KW=" << g.KW << " must be at least 1x1");
  TL_KCHECK(c, g.SH >= 1 && g.SW >= 1, "strides SH=" << g.SH << " SW=" << g.SW << " must be at least 1");
  TL_KCHECK(c, g.H < (int64_t(1) << 31) && g.W < (int64_t(1) << 31) && g.KH < (int64_t(1) << 31) &&
                   g.KW < (int64_t(1) << 31) && g.SH < (int64_t(1) << 31) && g.SW < (int64_t(1) << 31),
            "spatial attributes must be below 2^31");
  const char* rule = g.same ? "SAME: ceil(in/stride)" : "VALID: (in - k)/stride + 1";
  int64_t oh = 0, ow = 0;
  TL_KCHECK(c, spatialOut(g.H, g.KH, g.SH, g.same, &oh, &g.padTop),
            "VALID padding needs H >= KH, got H=" << g.H << " KH=" << g.KH);
  TL_KCHECK(c, spatialOut(g.W, g.KW, g.SW, g.same, &ow, &g.padLeft),
            "VALID padding needs W >= KW, got W=" << g.W << " KW=" << g.KW);
  TL_KCHECK(c, g.OH == oh, "OH=" << g.OH << " does not match padding " << rule << " = " << oh);
  TL_KCHECK(c, g.OW == ow, "OW=" << g.OW << " does not match padding " << rule << " = " << ow);
  mul(c, mul(c, mul(c, g.B, g.H), g.W), g.C);
  mul(c, mul(c, mul(c, g.B, g.OH), g.OW), g.C);
  return g;
}

// ---- dropout mask: a counter-based hash of (seed, step, element index), identical on every backend ----------------
// Must match src/reference/kernels.ts bit for bit. keep(i) ⇔ hash < threshold, threshold = ceil(keepProb·2^32).
#if defined(__CUDACC__)
#define TL_HOST_DEVICE __host__ __device__
#else
#define TL_HOST_DEVICE
#endif

TL_HOST_DEVICE inline uint32_t fmix32(uint32_t h) {  // MurmurHash3's finaliser: a bijection on 32 bits
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct DropoutKey {
  uint32_t k1, k2;
};

// seed and step are integers in [0, 2^53); both 32-bit halves of each enter the key.
TL_HOST_DEVICE inline DropoutKey dropoutKey(uint64_t seed, uint64_t step) {
  uint32_t k = fmix32((uint32_t)seed ^ 0x9e3779b9u);
  k = fmix32(k ^ (uint32_t)(seed >> 32) ^ 0x7f4a7c15u);
  k = fmix32(k ^ (uint32_t)step ^ 0x85ebca6bu);
  k = fmix32(k ^ (uint32_t)(step >> 32) ^ 0xc2b2ae35u);
  return DropoutKey{k, fmix32(k ^ 0x27d4eb2fu)};
}

// Element i (< 2^32): two rounds, so masks of different steps are not shifts of one sequence.
TL_HOST_DEVICE inline uint32_t dropoutHash(DropoutKey key, uint32_t i) { return fmix32(fmix32(i + key.k1) ^ key.k2); }

void registerLayerKernels(KernelTable& t);
void registerElementwiseKernels(KernelTable& t);
void registerOptimKernels(KernelTable& t);
void registerInputKernels(KernelTable& t);
void registerImageInputKernels(KernelTable& t);
void registerConvKernels(KernelTable& t);
void registerReplicaKernels(KernelTable& t);

}  // namespace cpuk
}  // namespace tl
