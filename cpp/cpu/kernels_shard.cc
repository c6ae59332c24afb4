// The sharded update's reduce with the norm in one pass, for towers that share memory (Note [Shared gradients] in
// src/model/shard-plan.ts): add_grad_norm.
#include <algorithm>

#include "kernels_cpu.h"
#include "kernels_sums.h"

namespace tl {
namespace cpuk {

// in: w (N), a (N), b (N); out: g (N) = a + b, then as l2_grad_norm on g: g += lambda·w (lambda > 0), s (1) += Σg²,
// loss (1) += lambda·½·Σw². Block by block, so each block of g is summed while it is in L1: one pass over memory.
// The sums are in double, per block in sumSquares' order (Note [Sixteen partial sums]), blocks added in order: the
// same bits on every ISA path and run.
TL_CPU_KERNEL(add_grad_norm) {
  const ElementwiseArgs& args = c.args<ElementwiseArgs>();
  const float *w = c.in[0].f32(), *a = c.in[1].f32(), *b = c.in[2].f32();
  float* g = c.out[0].f32();
  constexpr int64_t kBlock = 4096;  // 16 KB of g
  double g2 = 0, w2 = 0;
  for (int64_t at = 0; at < args.N; at += kBlock) {
    const int64_t n = std::min(kBlock, args.N - at);
    for (int64_t i = at; i < at + n; ++i) g[i] = a[i] + b[i];
    if (args.coef > 0) {
      double bg = 0, bw = 0;
      l2GradSums(w + at, g + at, n, (float)args.coef, &bg, &bw);
      g2 += bg;
      w2 += bw;
    } else {
      g2 += sumSquares(g + at, n);
    }
  }
  float *s = c.out[1].f32(), *loss = c.out[2].f32();
  s[0] = (float)((double)s[0] + g2);
  if (args.coef > 0) loss[0] = (float)((double)loss[0] + args.coef * 0.5 * w2);
}

}  // namespace cpuk
}  // namespace tl
