// The sharded update's reduce with the norm in one pass, for towers that share memory (Note [Shared gradients] in
// src/model/shard-plan.ts): add_grad_norm.
#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "kernels_cpu.h"
#include "kernels_sums.h"

namespace tl {
namespace cpuk {

namespace {

constexpr int64_t kBlock = 2048;  // 8 KB: the block's sum stays in L1 while it is normed

// g[0, n) = s[0, n), with streaming stores where g is 16-byte aligned: g is read next by the update, long after
// the pass has moved on, so its lines are not worth fetching into the cache first (a plain store reads each line
// from memory before writing it). Values are copied, so the bits do not depend on the path.
void storeStreaming(float* g, const float* s, int64_t n) {
#if defined(__SSE2__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(g + i) & 15) != 0; ++i) g[i] = s[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(g + i, _mm_loadu_ps(s + i));
  for (; i < n; ++i) g[i] = s[i];
#else
  std::memcpy(g, s, static_cast<size_t>(n) * sizeof(float));
#endif
}

}  // namespace

// in: w (N), a (N), b (N); out: g (N) = a + b, then as l2_grad_norm on g: g += lambda·w (lambda > 0), s (1) += Σg²,
// loss (1) += lambda·½·Σw². Block by block: each block's sum is formed and normed in L1, then stored into g: one
// pass over memory. The sums are in double, per block in sumSquares' order (Note [Sixteen partial sums]), blocks
// added in order: the same bits on every ISA path and run.
TL_CPU_KERNEL(add_grad_norm) {
  const ElementwiseArgs& args = c.args<ElementwiseArgs>();
  const float *w = c.in[0].f32(), *a = c.in[1].f32(), *b = c.in[2].f32();
  float* g = c.out[0].f32();
  alignas(64) float sum[kBlock];
  double g2 = 0, w2 = 0;
  for (int64_t at = 0; at < args.N; at += kBlock) {
    const int64_t n = std::min(kBlock, args.N - at);
    for (int64_t i = 0; i < n; ++i) sum[i] = a[at + i] + b[at + i];
    if (args.coef > 0) {
      double bg = 0, bw = 0;
      l2GradSums(w + at, sum, n, (float)args.coef, &bg, &bw);
      g2 += bg;
      w2 += bw;
    } else {
      g2 += sumSquares(sum, n);
    }
    storeStreaming(g + at, sum, n);
  }
#if defined(__SSE2__)
  _mm_sfence();  // the streamed stores are visible before anything after this kernel (the barrier, a host read)
#endif
  float *s = c.out[1].f32(), *loss = c.out[2].f32();
  s[0] = (float)((double)s[0] + g2);
  if (args.coef > 0) loss[0] = (float)((double)loss[0] + args.coef * 0.5 * w2);
}

}  // namespace cpuk
}  // namespace tl
