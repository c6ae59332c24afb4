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

void registerLayerKernels(KernelTable& t);
void registerElementwiseKernels(KernelTable& t);
void registerOptimKernels(KernelTable& t);
void registerInputKernels(KernelTable& t);

}  // namespace cpuk
}  // namespace tl
