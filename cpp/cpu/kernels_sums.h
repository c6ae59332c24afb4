// The CPU kernels' long sums in double (Σx², the fused L2 gradient and norm), one fixed summation order on every
// ISA path (Note [Kernel ISA] in isa.h; Note [Sixteen partial sums] in kernels_sums.cc).
#pragma once
#include <cstdint>

namespace tl {
namespace cpuk {

// Σ x[i]² over [0, n), in double.
double sumSquares(const float* x, int64_t n);

// One pass over a parameter (Note [Fused parameter tail] in src/model/passes.ts): g[i] += lambda·w[i] (f32, as
// l2_backward), then *sumG2 = Σ g[i]² of the new g and *sumW2 = Σ w[i]², both in double and in sumSquares' order;
// with sumOld2, also *sumOld2 = Σ g[i]² of the g given, the bits of sumSquares(g) before the call.
void l2GradSums(const float* w, float* g, int64_t n, float lambda, double* sumG2, double* sumW2, double* sumOld2 = nullptr);

}  // namespace cpuk
}  // namespace tl
