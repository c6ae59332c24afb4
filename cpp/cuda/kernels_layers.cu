// CUDA layer kernels: dense (cuBLAS SGEMM), activations, softmax cross-entropy, mean loss, accuracy (docs/kernels.md).
#include <algorithm>

#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// ---- GEMM ------------------------------------------------------------------------------------------------------

// Row-major C (M,N) = op(A)·op(B) via column-major cuBLAS: a row-major (R,K) matrix is column-major (K,R), so we
// compute Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. swap the operands and keep the transpose flags.
// A is (M,K) row-major (or (K,M) if transA), B is (K,N) (or (N,K) if transB); lda/ldb/ldc are row strides.
static void gemmRowMajor(KernelCall& c, bool transA, bool transB, int M, int N, int K, const float* A, int lda,
                         const float* B, int ldb, float beta, float* C, int ldc) {
  CudaBackend& cb = cudaOf(c);
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta·C with an empty product: only beta = 0 changes anything
    if (beta == 0.f) TL_CUDA_CHECK(cudaMemsetAsync(C, 0, sizeof(float) * (size_t)M * ldc, cb.stream()));
    return;
  }
  const float alpha = 1.f;
  TL_CUBLAS_CHECK(cublasSgemm(cb.blas(), transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                              K, &alpha, B, std::max(ldb, 1), A, std::max(lda, 1), &beta, C, std::max(ldc, 1)));
}

// y (B,O): every row = b (O)
__global__ void broadcastRowsKernel(const float* __restrict__ b, float* __restrict__ y, int64_t rows, int64_t cols) {
  TL_GRID_STRIDE(i, rows * cols) y[i] = b[i % cols];
}

// in: x (B,I), W (I,O), b (O); out: y (B,O) = x·W + b
static void dense_forward(KernelCall& c) {
  c.expectArity(3, 1, 1);
  const int64_t B = dim(c, "B"), I = dim(c, "I"), O = dim(c, "O");
  const TensorRef &x = c.in[0], &W = c.in[1], &b = c.in[2], &y = c.out[0];
  c.expectType(x, "x", DType::F32); c.expectType(W, "W", DType::F32);
  c.expectType(b, "b", DType::F32); c.expectType(y, "y", DType::F32);
  c.expectSize(x, "x", mul(c, B, I), "(B,I)");
  c.expectSize(W, "W", mul(c, I, O), "(I,O)");
  c.expectSize(b, "b", O, "(O)");
  c.expectSize(y, "y", mul(c, B, O), "(B,O)");
  const int iB = gemmDim(c, B, "B"), iI = gemmDim(c, I, "I"), iO = gemmDim(c, O, "O");
  if (B * O == 0) return;
  CudaBackend& cb = cudaOf(c);
  // Seed y with the bias rows, then accumulate x·W on top (beta = 1).
  broadcastRowsKernel<<<gridFor(B * O), kThreads, 0, cb.stream()>>>(b.f32(), y.f32(), B, O);
  TL_CUDA_LAUNCH_CHECK();
  gemmRowMajor(c, false, false, iB, iO, iI, x.f32(), iI, W.f32(), iO, 1.f, y.f32(), iO);
}

// db (O) = Σ_rows dy (B,O), in double; one thread per column (coalesced across the warp). acc: db += instead.
__global__ void columnSumsKernel(const float* __restrict__ dy, float* __restrict__ db, int64_t rows, int64_t cols,
                                 bool acc) {
  TL_GRID_STRIDE(o, cols) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += dy[r * cols + o];
    db[o] = acc ? (float)((double)db[o] + s) : (float)s;
  }
}

// in: x (B,I), W (I,O), dy (B,O); out: dW (I,O), db (O) [, dx (B,I)]
static void dense_backward(KernelCall& c) {
  c.expectArity(3, 2, 3);
  const int64_t B = dim(c, "B"), I = dim(c, "I"), O = dim(c, "O");
  const double accAttr = attr(c, "accumulate", 0);
  TL_KCHECK(c, accAttr == 0 || accAttr == 1, "attribute accumulate must be 0 or 1, got " << accAttr);
  const bool acc = accAttr == 1;
  const TensorRef &x = c.in[0], &W = c.in[1], &dy = c.in[2], &dW = c.out[0], &db = c.out[1];
  c.expectType(x, "x", DType::F32); c.expectType(W, "W", DType::F32); c.expectType(dy, "dy", DType::F32);
  c.expectType(dW, "dW", DType::F32); c.expectType(db, "db", DType::F32);
  c.expectSize(x, "x", mul(c, B, I), "(B,I)");
  c.expectSize(W, "W", mul(c, I, O), "(I,O)");
  c.expectSize(dy, "dy", mul(c, B, O), "(B,O)");
  c.expectSize(dW, "dW", mul(c, I, O), "(I,O)");
  c.expectSize(db, "db", O, "(O)");
  const bool wantDx = c.out.size() == 3;
  if (wantDx) {
    c.expectType(c.out[2], "dx", DType::F32);
    c.expectSize(c.out[2], "dx", mul(c, B, I), "(B,I)");
  }
  const int iB = gemmDim(c, B, "B"), iI = gemmDim(c, I, "I"), iO = gemmDim(c, O, "O");
  CudaBackend& cb = cudaOf(c);
  // dW (I,O) = xᵀ (I,B) · dy (B,O)
  gemmRowMajor(c, true, false, iI, iO, iB, x.f32(), iI, dy.f32(), iO, acc ? 1.f : 0.f, dW.f32(), iO);
  if (O > 0) {
    columnSumsKernel<<<gridFor(O), kThreads, 0, cb.stream()>>>(dy.f32(), db.f32(), B, O, acc);
    TL_CUDA_LAUNCH_CHECK();
  }
  // dx (B,I) = dy (B,O) · Wᵀ (O,I)
  if (wantDx) gemmRowMajor(c, false, true, iB, iI, iO, dy.f32(), iO, W.f32(), iO, 0.f, c.out[2].f32(), iI);
}

// ---- activations ----------------------------------------------------------------------------------------------

// Shared checks for the unary elementwise kernels: in a (N) f32 [, b (N)], out (N) f32.
static int64_t unaryChecks(KernelCall& c, size_t nIn, const char* inName, const char* in2Name, const char* outName) {
  c.expectArity(nIn, 1, 1);
  const int64_t N = dim(c, "N");
  c.expectType(c.in[0], inName, DType::F32);
  c.expectSize(c.in[0], inName, N, "(N)");
  if (nIn == 2) {
    c.expectType(c.in[1], in2Name, DType::F32);
    c.expectSize(c.in[1], in2Name, N, "(N)");
  }
  c.expectType(c.out[0], outName, DType::F32);
  c.expectSize(c.out[0], outName, N, "(N)");
  return N;
}

struct ReluF { __device__ float operator()(float x) const { return x < 0.f ? 0.f : x; } };  // NaN propagates
struct SigmoidF {  // exp of a non-positive number only: no overflow for large |x|
  __device__ float operator()(float x) const {
    const float e = expf(-fabsf(x));
    return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  }
};
struct TanhF { __device__ float operator()(float x) const { return tanhf(x); } };
struct ReluBackF { __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : 0.f; } };
struct SigmoidBackF { __device__ float operator()(float y, float dy) const { return dy * y * (1.f - y); } };
struct TanhBackF { __device__ float operator()(float y, float dy) const { return dy * (1.f - y * y); } };

// x (N) -> y (N)
template <class F> __global__ void unaryKernel(const float* x, float* y, int64_t n, F f) {
  TL_GRID_STRIDE(i, n) y[i] = f(x[i]);
}
// y (N), dy (N) -> dx (N); no __restrict__: dx may alias dy (each element is read before it is written)
template <class F> __global__ void binaryKernel(const float* a, const float* b, float* out, int64_t n, F f) {
  TL_GRID_STRIDE(i, n) out[i] = f(a[i], b[i]);
}

template <class F> static void unaryOp(KernelCall& c) {
  const int64_t N = unaryChecks(c, 1, "x", nullptr, "y");
  if (N == 0) return;
  unaryKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, F{});
  TL_CUDA_LAUNCH_CHECK();
}
template <class F> static void backwardOp(KernelCall& c) {
  const int64_t N = unaryChecks(c, 2, "y", "dy", "dx");
  if (N == 0) return;
  binaryKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(), N, F{});
  TL_CUDA_LAUNCH_CHECK();
}

// ---- losses ---------------------------------------------------------------------------------------------------

// Checks a (B,C) f32 matrix and its labels (B) i32 buffer; label values are checked on the device.
static void checkLogitsLabels(KernelCall& c, const TensorRef& m, const char* mName, const TensorRef& labels, int64_t B,
                              int64_t C) {
  c.expectType(m, mName, DType::F32);
  c.expectSize(m, mName, mul(c, B, C), "(B,C)");
  c.expectType(labels, "labels", DType::I32);
  c.expectSize(labels, "labels", B, "(B)");
}

// One block per row r of logits (B,C): probs row = softmax (max-subtracted); rowTerm[r] = logsumexp − logit[label].
// probs may alias logits: the label logit and the max are read before any write (blockReduce syncs).
__global__ void softmaxRowsKernel(const float* logits, const int32_t* __restrict__ labels, float* probs, int64_t C,
                                  double* __restrict__ rowTerm) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * C;
  float* p = probs + r * C;
  const float xl = x[labels[r]];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) mx = fmaxf(mx, x[j]);
  mx = blockReduce(mx, MaxOp{}, -INFINITY);
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const float e = expf(x[j] - mx);
    p[j] = e;
    s += e;
  }
  s = blockReduce(s, SumOp{}, 0.0);
  const float inv = (float)(1.0 / s);
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) p[j] *= inv;  // same thread wrote p[j] above
  if (threadIdx.x == 0) rowTerm[r] = ((double)mx + log(s)) - (double)xl;
}

struct RowTermF {
  const double* t;
  __device__ double operator()(int64_t i) const { return t[i]; }
};

// in: logits (B,C), labels (B), hyper; out: loss (1), probs (B,C)
static void softmax_xent_forward(KernelCall& c) {
  c.expectArity(3, 2, 2);
  const int64_t B = dim(c, "B"), C = dim(c, "C");
  const TensorRef &logits = c.in[0], &labels = c.in[1], &loss = c.out[0], &probs = c.out[1];
  checkLogitsLabels(c, logits, "logits", labels, B, C);
  expectHyper(c, c.in[2]);
  c.expectType(loss, "loss", DType::F32);
  c.expectSize(loss, "loss", 1, "(1)");
  c.expectType(probs, "probs", DType::F32);
  c.expectSize(probs, "probs", mul(c, B, C), "(B,C)");
  TL_KCHECK(c, B <= INT32_MAX, "B=" << B << " is too large for this backend (one block per row)");
  checkIndicesOnDevice(c, labels.i32(), B, C, "label", "row", "C");
  CudaBackend& cb = cudaOf(c);
  // Scratch layout: [reduction partials | B row terms].
  const size_t partialBytes = kMaxReduceBlocks * sizeof(double);
  char* base = static_cast<char*>(cb.scratch(partialBytes + (size_t)B * sizeof(double)));
  double* rowTerm = reinterpret_cast<double*>(base + partialBytes);
  if (B > 0) {
    softmaxRowsKernel<<<(unsigned)B, kThreads, 0, cb.stream()>>>(logits.f32(), labels.i32(), probs.f32(), C, rowTerm);
    TL_CUDA_LAUNCH_CHECK();
  }
  // loss[0] = hyper[2] · Σ_rows rowTerm (reduceToScalar puts its partials at the scratch base)
  ScalarEpilogue ep;
  ep.hyper = c.in[2].f32();
  reduceToScalar(c, B, RowTermF{rowTerm}, loss.f32(), ep);
}

// dlogits (B,C) = hyper[2]·(probs − onehot(labels)); no __restrict__ on probs/dl: they may alias
__global__ void softmaxBackKernel(const float* probs, const int32_t* __restrict__ labels, const float* hyper,
                                  float* dl, int64_t n, int64_t C) {
  const float w = hyper[2];
  TL_GRID_STRIDE(i, n) {
    const int64_t r = i / C, j = i - r * C;
    dl[i] = w * (probs[i] - (j == labels[r] ? 1.f : 0.f));
  }
}

// in: probs (B,C), labels (B), hyper; out: dlogits (B,C)
static void softmax_xent_backward(KernelCall& c) {
  c.expectArity(3, 1, 1);
  const int64_t B = dim(c, "B"), C = dim(c, "C");
  const TensorRef &probs = c.in[0], &labels = c.in[1], &dl = c.out[0];
  checkLogitsLabels(c, probs, "probs", labels, B, C);
  expectHyper(c, c.in[2]);
  c.expectType(dl, "dlogits", DType::F32);
  c.expectSize(dl, "dlogits", mul(c, B, C), "(B,C)");
  checkIndicesOnDevice(c, labels.i32(), B, C, "label", "row", "C");
  const int64_t n = B * C;
  if (n == 0) return;
  softmaxBackKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(probs.f32(), labels.i32(), c.in[2].f32(),
                                                                      dl.f32(), n, C);
  TL_CUDA_LAUNCH_CHECK();
}

struct ValueF {
  const float* x;
  __device__ double operator()(int64_t i) const { return (double)x[i]; }
};

// in: x (B,C), hyper; out: loss (1) = hyper[2]·Σ x / C
static void mean_forward(KernelCall& c) {
  c.expectArity(2, 1, 1);
  const int64_t B = dim(c, "B"), C = dim(c, "C");
  TL_KCHECK(c, C > 0, "C must be positive (mean over zero features)");
  c.expectType(c.in[0], "x", DType::F32);
  c.expectSize(c.in[0], "x", mul(c, B, C), "(B,C)");
  expectHyper(c, c.in[1]);
  c.expectType(c.out[0], "loss", DType::F32);
  c.expectSize(c.out[0], "loss", 1, "(1)");
  ScalarEpilogue ep;
  ep.coef = 1.0 / (double)C;
  ep.hyper = c.in[1].f32();
  reduceToScalar(c, B * C, ValueF{c.in[0].f32()}, c.out[0].f32(), ep);
}

// dx (n) = hyper[2] / C
__global__ void meanBackKernel(const float* hyper, float* dx, int64_t n, int64_t C) {
  const float v = (float)((double)hyper[2] / (double)C);
  TL_GRID_STRIDE(i, n) dx[i] = v;
}

// in: hyper; out: dx (B,C)
static void mean_backward(KernelCall& c) {
  c.expectArity(1, 1, 1);
  const int64_t B = dim(c, "B"), C = dim(c, "C");
  TL_KCHECK(c, C > 0, "C must be positive (mean over zero features)");
  expectHyper(c, c.in[0]);
  c.expectType(c.out[0], "dx", DType::F32);
  c.expectSize(c.out[0], "dx", mul(c, B, C), "(B,C)");
  const int64_t n = B * C;
  if (n == 0) return;
  meanBackKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), n, C);
  TL_CUDA_LAUNCH_CHECK();
}

// One warp per row of logits (B,C): first argmax (strict >, lowest index on ties); hits[0] counts label matches.
__global__ void argmaxHitsKernel(const float* __restrict__ logits, const int32_t* __restrict__ labels, int64_t B,
                                 int64_t C, unsigned long long* hits) {
  const int lane = threadIdx.x & 31;
  const int64_t warpsPerGrid = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < B; r += warpsPerGrid) {
    const float* x = logits + r * C;
    float bv = 0.f;
    int64_t bi = -1;  // -1: this lane saw no element yet
    for (int64_t j = lane; j < C; j += 32)
      if (bi < 0 || x[j] > bv) { bv = x[j]; bi = j; }
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, bv, off);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, off);
      if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    if (lane == 0 && bi == (int64_t)labels[r]) atomicAdd(hits, 1ull);
  }
}

__global__ void hitsToFloatKernel(const unsigned long long* hits, float* count) { count[0] = (float)hits[0]; }

// in: logits (B,C), labels (B); out: count (1) f32
static void accuracy_count(KernelCall& c) {
  c.expectArity(2, 1, 1);
  const int64_t B = dim(c, "B"), C = dim(c, "C");
  checkLogitsLabels(c, c.in[0], "logits", c.in[1], B, C);
  c.expectType(c.out[0], "count", DType::F32);
  c.expectSize(c.out[0], "count", 1, "(1)");
  checkIndicesOnDevice(c, c.in[1].i32(), B, C, "label", "row", "C");
  CudaBackend& cb = cudaOf(c);
  auto* hits = static_cast<unsigned long long*>(cb.scratch(sizeof(unsigned long long)));
  TL_CUDA_CHECK(cudaMemsetAsync(hits, 0, sizeof(unsigned long long), cb.stream()));
  if (B > 0) {
    const int rowsPerBlock = kThreads / 32;
    const int64_t blocks = std::min<int64_t>((B + rowsPerBlock - 1) / rowsPerBlock, kMaxGrid);
    argmaxHitsKernel<<<(unsigned)blocks, kThreads, 0, cb.stream()>>>(c.in[0].f32(), c.in[1].i32(), B, C, hits);
    TL_CUDA_LAUNCH_CHECK();
  }
  hitsToFloatKernel<<<1, 1, 0, cb.stream()>>>(hits, c.out[0].f32());
  TL_CUDA_LAUNCH_CHECK();
}

void registerLayerKernels(KernelTable& t) {
  t.fns["dense_forward"] = dense_forward;
  t.fns["dense_backward"] = dense_backward;
  t.fns["relu_forward"] = unaryOp<ReluF>;
  t.fns["relu_backward"] = backwardOp<ReluBackF>;
  t.fns["sigmoid_forward"] = unaryOp<SigmoidF>;
  t.fns["sigmoid_backward"] = backwardOp<SigmoidBackF>;
  t.fns["tanh_forward"] = unaryOp<TanhF>;
  t.fns["tanh_backward"] = backwardOp<TanhBackF>;
  t.fns["softmax_xent_forward"] = softmax_xent_forward;
  t.fns["softmax_xent_backward"] = softmax_xent_backward;
  t.fns["mean_forward"] = mean_forward;
  t.fns["mean_backward"] = mean_backward;
  t.fns["accuracy_count"] = accuracy_count;
}

}  // namespace cudak
}  // namespace tl
