// CUDA regularisation, norm and elementwise kernels: l2_loss, l2_backward, sum_squares, l2_grad_norm, add_grad_norm,
// dense_grad_norm, clip_by_norm, fill, scale, axpy, copy (docs/kernels.md).
#include "kernels_common.cuh"

namespace tl {
namespace cudak {

struct SquareF {
  const float* x;
  __device__ double operator()(int64_t i) const { const double v = x[i]; return v * v; }
};

// in: w (N); out: loss (1), accumulates: loss += lambda·½·Σw² (double)
TL_CUDA_KERNEL(l2_loss) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  ScalarEpilogue ep;
  ep.keep = true;
  ep.coef = a.coef * 0.5;
  reduceToScalar(c, a.N, SquareF{c.in[0].f32()}, c.out[0].f32(), ep);
}

// g (N) += lambda·w (N)
__global__ void axpyKernel(const float* x, float* y, int64_t n, float a) {
  TL_GRID_STRIDE(i, n) y[i] += a * x[i];
}

// in: w (N); out: g (N), in place: g += lambda·w
TL_CUDA_KERNEL(l2_backward) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float lambda = (float)a.coef;
  if (N == 0) return;
  axpyKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, lambda);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: s (1), accumulates: s += Σx² (double)
TL_CUDA_KERNEL(sum_squares) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  ScalarEpilogue ep;
  ep.keep = true;
  reduceToScalar(c, N, SquareF{c.in[0].f32()}, c.out[0].f32(), ep);
}

// g[i] += lambda·w[i], returning the new g[i]² (the first pass of l2_grad_norm; each i is visited once)
struct L2GradSquareF {
  const float* w;
  float* g;
  float lambda;
  __device__ double operator()(int64_t i) const {
    const float gi = g[i] + lambda * w[i];
    g[i] = gi;
    const double v = gi;
    return v * v;
  }
};

// in: w (N); out: g (N) += lambda·w, s (1) += Σg² of the new g, loss (1) += lambda·½·Σw² (Note [Fused parameter
// tail] in src/model/passes.ts): two stream-ordered reductions, the first also writing g.
TL_CUDA_KERNEL(l2_grad_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  if (c.out.size() > 3) {  // local (1) += Σg² of the incoming g: a sum_squares before the rest, stream-ordered
    ScalarEpilogue local;
    local.keep = true;
    reduceToScalar(c, a.N, SquareF{c.out[0].f32()}, c.out[3].f32(), local);
  }
  ScalarEpilogue norm;
  norm.keep = true;
  reduceToScalar(c, a.N, L2GradSquareF{c.in[0].f32(), c.out[0].f32(), (float)a.coef}, c.out[1].f32(), norm);
  ScalarEpilogue l2;
  l2.keep = true;
  l2.coef = a.coef * 0.5;
  reduceToScalar(c, a.N, SquareF{c.in[0].f32()}, c.out[2].f32(), l2);
}

// g[i] = a[i] + b[i] (+ lambda·w[i] when lambda > 0), returning the new g[i]² (the first pass of add_grad_norm; each
// i is visited once, a[i] and b[i] read before g[i] is written, so g may be a or b)
struct AddGradSquareF {
  const float *w, *a, *b;
  float* g;
  float lambda;
  __device__ double operator()(int64_t i) const {
    float gi = a[i] + b[i];
    if (lambda > 0.f) gi = gi + lambda * w[i];
    g[i] = gi;
    const double v = gi;
    return v * v;
  }
};

// in: w (N), a (N), b (N); out: g (N) = a + b (+ lambda·w), s (1) += Σg², loss (1) += lambda·½·Σw² when lambda > 0
// (the sharded update's two-tower reduce, Note [Shared gradients] in src/model/shard-plan.ts): l2_grad_norm's
// stream-ordered reductions, the first also forming g.
TL_CUDA_KERNEL(add_grad_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  if (a.N == 0) return;
  ScalarEpilogue norm;
  norm.keep = true;
  reduceToScalar(c, a.N, AddGradSquareF{c.in[0].f32(), c.in[1].f32(), c.in[2].f32(), c.out[0].f32(), (float)a.coef},
                 c.out[1].f32(), norm);
  if (a.coef > 0) {
    ScalarEpilogue l2;
    l2.keep = true;
    l2.coef = a.coef * 0.5;
    reduceToScalar(c, a.N, SquareF{c.in[0].f32()}, c.out[2].f32(), l2);
  }
}

__global__ void copyKernel(const float* x, float* y, int64_t n) {
  TL_GRID_STRIDE(i, n) y[i] = x[i];
}

// in: w (N), x0 (B,I), dy0 (B,O), n0 (1), x1 (B,I), dy1 (B,O), n1 (1); out: g (N), s (1), loss (1) (Note [Shared
// gradients] in src/model/shard-plan.ts): the rows of the (I,O) weight gradient holding [at, at+N) formed in scratch,
// tower 0's product then tower 1's added (beta 1), the piece copied into g, then l2_grad_norm's reductions on it.
// The row counts are read back first (one stream sync) and checked on the host.
TL_CUDA_KERNEL(dense_grad_norm) {
  const DenseGradNormArgs& a = c.args<DenseGradNormArgs>();
  if (a.N == 0) return;
  CudaBackend& cb = cudaOf(c);
  float n[2];
  cb.readBack(&n[0], c.in[3].f32(), sizeof(float));
  cb.readBack(&n[1], c.in[6].f32(), sizeof(float));
  for (int t = 0; t < 2; ++t)
    TL_KCHECK(c, floorf(n[t]) == n[t] && n[t] >= 0 && n[t] <= (float)a.B,
              "n" << t << " = " << n[t] << " rows; expected an integer in [0, B=" << a.B << "]");
  const int64_t O = a.O, r0 = a.at / O, r1 = (a.at + a.N + O - 1) / O;
  const int m = (int)(r1 - r0), iI = a.iI, iO = a.iO;
  float* rows = static_cast<float*>(cb.scratch((size_t)(m * O) * sizeof(float)));
  gemmRowMajor(c, true, false, m, iO, (int)n[0], c.in[1].f32() + r0, iI, c.in[2].f32(), iO, 0.f, rows, iO);
  gemmRowMajor(c, true, false, m, iO, (int)n[1], c.in[4].f32() + r0, iI, c.in[5].f32(), iO, 1.f, rows, iO);
  copyKernel<<<gridFor(a.N), kThreads, 0, cb.stream()>>>(rows + (a.at - r0 * O), c.out[0].f32(), a.N);
  TL_CUDA_LAUNCH_CHECK();
  ScalarEpilogue norm;
  norm.keep = true;
  if (a.lambda > 0) {
    reduceToScalar(c, a.N, L2GradSquareF{c.in[0].f32(), c.out[0].f32(), (float)a.lambda}, c.out[1].f32(), norm);
    ScalarEpilogue l2;
    l2.keep = true;
    l2.coef = a.lambda * 0.5;
    reduceToScalar(c, a.N, SquareF{c.in[0].f32()}, c.out[2].f32(), l2);
  } else {
    reduceToScalar(c, a.N, SquareF{c.out[0].f32()}, c.out[1].f32(), norm);
  }
}

// g (N) *= min(1, clipNorm/sqrt(s[0])); s = 0 or a factor >= 1 leaves g unchanged, a NaN norm scales by NaN.
__global__ void clipKernel(const float* s, float* g, int64_t n, double clipNorm) {
  const double sq = s[0];
  if (sq == 0.0) return;
  const double f = clipNorm / sqrt(sq);
  if (f >= 1.0) return;
  const float ff = (float)f;
  TL_GRID_STRIDE(i, n) g[i] *= ff;
}

// in: s (1) global squared norm; out: g (N), in place
TL_CUDA_KERNEL(clip_by_norm) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const double clipNorm = a.coef;
  if (N == 0) return;
  clipKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, clipNorm);
  TL_CUDA_LAUNCH_CHECK();
}

__global__ void fillKernel(float* x, int64_t n, float v) {
  TL_GRID_STRIDE(i, n) x[i] = v;
}

// out: x (N) = value
TL_CUDA_KERNEL(fill) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float v = (float)a.coef;
  if (N == 0) return;
  fillKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.out[0].f32(), N, v);
  TL_CUDA_LAUNCH_CHECK();
}

__global__ void scaleKernel(float* x, int64_t n, float f) {
  TL_GRID_STRIDE(i, n) x[i] *= f;
}

// out: x (N), in place: x *= factor
TL_CUDA_KERNEL(scale) {
  const ElementwiseArgs& a = c.args<ElementwiseArgs>();
  const int64_t N = a.N;
  const float f = (float)a.coef;
  if (N == 0) return;
  scaleKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.out[0].f32(), N, f);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: y (N), in place: y += alpha·x
TL_CUDA_KERNEL(axpy) {
  const ElementwiseArgs& args = c.args<ElementwiseArgs>();
  const int64_t N = args.N;
  const float a = (float)args.coef;
  if (N == 0) return;
  axpyKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, a);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: y (N) = x, bit-exact. x and y may be overlapping views of one buffer: memmove semantics.
TL_CUDA_KERNEL(copy) {
  const int64_t N = c.args<ElementwiseArgs>().N;
  if (N == 0) return;
  cudaOf(c).copyWithin(c.out[0].data, c.in[0].data, (size_t)N * sizeof(float));  // stream-ordered, overlap-safe
}

}  // namespace cudak
}  // namespace tl
