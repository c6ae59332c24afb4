// CUDA regularisation, norm and elementwise kernels: l2_loss, l2_backward, sum_squares, clip_by_norm, fill, scale,
// axpy, copy (docs/kernels.md).
#include "kernels_common.cuh"

namespace tl {
namespace cudak {

static void expectVec(KernelCall& c, const TensorRef& t, const char* name, int64_t n, const char* shape = "(N)") {
  c.expectType(t, name, DType::F32);
  c.expectSize(t, name, n, shape);
}

struct SquareF {
  const float* x;
  __device__ double operator()(int64_t i) const { const double v = x[i]; return v * v; }
};

// in: w (N); out: loss (1), accumulates: loss += lambda·½·Σw² (double)
static void l2_loss(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  const double lambda = attr(c, "lambda");
  expectVec(c, c.in[0], "w", N);
  expectVec(c, c.out[0], "loss", 1, "(1)");
  ScalarEpilogue ep;
  ep.keep = true;
  ep.coef = lambda * 0.5;
  reduceToScalar(c, N, SquareF{c.in[0].f32()}, c.out[0].f32(), ep);
}

// g (N) += lambda·w (N)
__global__ void axpyKernel(const float* x, float* y, int64_t n, float a) {
  TL_GRID_STRIDE(i, n) y[i] += a * x[i];
}

// in: w (N); out: g (N), in place: g += lambda·w
static void l2_backward(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  const float lambda = (float)attr(c, "lambda");
  expectVec(c, c.in[0], "w", N);
  expectVec(c, c.out[0], "g", N);
  if (N == 0) return;
  axpyKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, lambda);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: s (1), accumulates: s += Σx² (double)
static void sum_squares(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  expectVec(c, c.in[0], "x", N);
  expectVec(c, c.out[0], "s", 1, "(1)");
  ScalarEpilogue ep;
  ep.keep = true;
  reduceToScalar(c, N, SquareF{c.in[0].f32()}, c.out[0].f32(), ep);
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
static void clip_by_norm(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  const double clipNorm = attr(c, "clipNorm");
  expectVec(c, c.in[0], "s", 1, "(1)");
  expectVec(c, c.out[0], "g", N);
  if (N == 0) return;
  clipKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, clipNorm);
  TL_CUDA_LAUNCH_CHECK();
}

__global__ void fillKernel(float* x, int64_t n, float v) {
  TL_GRID_STRIDE(i, n) x[i] = v;
}

// out: x (N) = value
static void fill(KernelCall& c) {
  c.expectArity(0, 1, 1);
  const int64_t N = dim(c, "N");
  const float v = (float)attr(c, "value");
  expectVec(c, c.out[0], "x", N);
  if (N == 0) return;
  fillKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.out[0].f32(), N, v);
  TL_CUDA_LAUNCH_CHECK();
}

__global__ void scaleKernel(float* x, int64_t n, float f) {
  TL_GRID_STRIDE(i, n) x[i] *= f;
}

// out: x (N), in place: x *= factor
static void scale(KernelCall& c) {
  c.expectArity(0, 1, 1);
  const int64_t N = dim(c, "N");
  const float f = (float)attr(c, "factor");
  expectVec(c, c.out[0], "x", N);
  if (N == 0) return;
  scaleKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.out[0].f32(), N, f);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: y (N), in place: y += alpha·x
static void axpy(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  const float a = (float)attr(c, "alpha");
  expectVec(c, c.in[0], "x", N);
  expectVec(c, c.out[0], "y", N);
  if (N == 0) return;
  axpyKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, a);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x (N); out: y (N) = x, bit-exact. x and y may be overlapping views of one buffer: memmove semantics.
static void copy(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t N = dim(c, "N");
  expectVec(c, c.in[0], "x", N);
  expectVec(c, c.out[0], "y", N);
  if (N == 0) return;
  cudaOf(c).copyWithin(c.out[0].data, c.in[0].data, (size_t)N * sizeof(float));  // stream-ordered, overlap-safe
}

void registerElementwiseKernels(KernelTable& t) {
  t.fns["l2_loss"] = l2_loss;
  t.fns["l2_backward"] = l2_backward;
  t.fns["sum_squares"] = sum_squares;
  t.fns["clip_by_norm"] = clip_by_norm;
  t.fns["fill"] = fill;
  t.fns["scale"] = scale;
  t.fns["axpy"] = axpy;
  t.fns["copy"] = copy;
}

}  // namespace cudak
}  // namespace tl
