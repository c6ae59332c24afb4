// The sharded update's reduce with the norm in one pass, for towers that share memory (Note [Shared gradients] in
// src/model/shard-plan.ts): add_grad_norm, and dense_grad_norm, which also forms the dense weight gradients.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "gemm.h"
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

namespace {

// A row count read from its buffer when the kernel runs: an integer in [0, B].
int rowsOf(const KernelCall& c, const TensorRef& t, int64_t B, const char* name) {
  const float v = t.f32()[0];
  TL_KCHECK(c, std::floor(v) == v && v >= 0 && v <= (float)B, name << " = " << v << " rows; expected an integer in [0, B=" << B << "]");
  return (int)v;
}

// Elements per task: ~262 rows of a 1000-wide gradient, 1 MB of scratch. Each chunk's two products pack both towers'
// dy whole (OpenBLAS packs both operands per call), so fewer chunks pack less: for 3 of the block network's
// 1000x1000 weights per tower, 2 towers at once, 40 runs each interleaved on the loaded 2-core VM: median 9.6 ms at
// 64K elements, 8.8 at 256K, 8.5 at 512K, against 13.9 for dense_backward's six dW and add_grad_norm (blk2 probe).
constexpr int64_t kChunk = 128 * kBlock;

}  // namespace

// in: w (N), x0 (B,I), dy0 (B,O), n0 (1), x1 (B,I), dy1 (B,O), n1 (1); out: g (N), s (1), loss (1).
// g = elements [at, at+N) of the weight gradient x0ᵀ·dy0 + x1ᵀ·dy1 (I,O) over each tower's first n rows, then as
// add_grad_norm. Chunk by chunk (whole kBlocks from the piece's start): the rows holding the chunk are formed in a
// cache-sized scratch, tower 0's product (beta 0) then tower 1's added (beta 1: C + acc), each block normed there and
// streamed into g. Per-block sums in double, added in block order after all chunks (add_grad_norm's order); chunks
// spread over the device's GEMM threads, each product one single-threaded call cut by the piece's shape alone, so the
// bits do not depend on the thread count. They are not dense_backward's + add_grad_norm's bit for bit: OpenBLAS's
// per-element sums depend on how a product is cut (rows and columns per call), and these products are cut by chunk.
TL_CPU_KERNEL(dense_grad_norm) {
  const DenseGradNormArgs& a = c.args<DenseGradNormArgs>();
  const int n0 = rowsOf(c, c.in[3], a.B, "n0"), n1 = rowsOf(c, c.in[6], a.B, "n1");
  const float *w = c.in[0].f32(), *x0 = c.in[1].f32(), *dy0 = c.in[2].f32(), *x1 = c.in[4].f32(), *dy1 = c.in[5].f32();
  float* g = c.out[0].f32();
  const int64_t N = a.N, O = a.O, blocks = (N + kBlock - 1) / kBlock;
  const int iI = std::max(a.iI, 1), iO = std::max(a.iO, 1);
  std::vector<double> g2((size_t)blocks, 0.0), w2((size_t)blocks, 0.0);
  gemmForEach((int)((N + kChunk - 1) / kChunk), [&](int k) {
    thread_local std::vector<float> scratch;
    const int64_t e0 = k * kChunk, e1 = std::min(N, e0 + kChunk);
    const int64_t r0 = (a.at + e0) / O, r1 = (a.at + e1 + O - 1) / O;
    const int m = (int)(r1 - r0);
    if (scratch.size() < (size_t)(m * O)) scratch.resize((size_t)(m * O));
    float* rows = scratch.data();
    sgemmAlone(true, false, m, iO, n0, 1.f, x0 + r0, iI, dy0, iO, 0.f, rows, iO);
    sgemmAlone(true, false, m, iO, n1, 1.f, x1 + r0, iI, dy1, iO, 1.f, rows, iO);
    float* sum = rows + (a.at + e0 - r0 * O);
    for (int64_t at = e0; at < e1; at += kBlock) {
      const int64_t n = std::min(kBlock, e1 - at), b = at / kBlock;
      if (a.lambda > 0)
        l2GradSums(w + at, sum + (at - e0), n, (float)a.lambda, &g2[(size_t)b], &w2[(size_t)b]);
      else
        g2[(size_t)b] = sumSquares(sum + (at - e0), n);
      storeStreaming(g + at, sum + (at - e0), n);
    }
  });
#if defined(__SSE2__)
  _mm_sfence();
#endif
  double sg = 0, sw = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    sg += g2[(size_t)b];
    sw += w2[(size_t)b];
  }
  float *s = c.out[1].f32(), *loss = c.out[2].f32();
  s[0] = (float)((double)s[0] + sg);
  if (a.lambda > 0) loss[0] = (float)((double)loss[0] + a.lambda * 0.5 * sw);
}

}  // namespace cpuk
}  // namespace tl
