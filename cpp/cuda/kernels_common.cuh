// Shared pieces of the CUDA kernel files: launch sizing, warp/block reductions, the scalar-reduction pipeline, the
// row-major GEMM wrapper and the label/index range check. Parsed arguments are cpp/kernel_args.h, shared with the CPU.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../dropout_hash.h"
#include "../hyper.h"
#include "../kernel_args.h"
#include "backend_cuda.h"
#include "cuda_check.h"

namespace tl {
namespace cudak {

using namespace kargs;  // the parsed arguments every kernel reads (host side), shared with the CPU backend

// Defines a CUDA kernel (its host-side launcher) and registers it under its name (Note [Kernel registry]).
#define TL_CUDA_KERNEL(name) TL_KERNEL(::tl::cudak::cudaKernelTable, name)

constexpr int kThreads = 256;
constexpr int kMaxGrid = 8192;           // grid-stride loops cover the rest
constexpr int kMaxReduceBlocks = 1024;   // partials of a scalar reduction (fixed per n, so results are deterministic)

// Grid-stride loop over [0, n) with 64-bit indices.
#define TL_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

inline CudaBackend& cudaOf(KernelCall& c) { return static_cast<CudaBackend&>(c.device); }

// Blocks for a grid-stride loop over n elements (n > 0).
inline unsigned gridFor(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < kMaxGrid ? b : kMaxGrid);
}

struct SumOp {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class T, class Op> __device__ T warpReduce(T v, Op op) {
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  return v;
}

// Reduces one value per thread across the block; every thread gets the result. blockDim.x: multiple of 32, <= 1024.
template <class T, class Op> __device__ T blockReduce(T v, Op op, T identity) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpReduce(v, op);
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  const int nw = blockDim.x >> 5;
  T r = threadIdx.x < nw ? part[threadIdx.x] : identity;
  if (warp == 0) r = warpReduce(r, op);
  if (threadIdx.x == 0) part[0] = r;
  __syncthreads();
  return part[0];
}

// Pass 1 of a scalar reduction: partials[blockIdx.x] = Σ f(i) over this block's grid-stride share, in double.
template <class F> __global__ void reducePartialsKernel(int64_t n, F f, double* partials) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    acc += f(i);
  acc = blockReduce(acc, SumOp{}, 0.0);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// out[0] = (keep ? out[0] : 0) + coef · (hyper ? hyper[kHyperGradScale] : 1) · S, in double, S = Σ partials.
struct ScalarEpilogue {
  bool keep = false;
  double coef = 1.0;
  const float* hyper = nullptr;
};

// Pass 2 (kernels_common.cu): one block sums the partials in a fixed order and applies the epilogue.
void launchFinishScalar(cudaStream_t s, const double* partials, int nb, float* out, ScalarEpilogue ep);

// Runs both passes of a scalar reduction over n elements with functor f (device-callable, returns double).
template <class F> void reduceToScalar(KernelCall& c, int64_t n, F f, float* out, ScalarEpilogue ep) {
  CudaBackend& cb = cudaOf(c);
  double* partials = static_cast<double*>(cb.scratch(kMaxReduceBlocks * sizeof(double)));
  int nb = 0;
  if (n > 0) {
    const int64_t want = (n + kThreads - 1) / kThreads;
    nb = static_cast<int>(want < kMaxReduceBlocks ? want : kMaxReduceBlocks);
    reducePartialsKernel<<<nb, kThreads, 0, cb.stream()>>>(n, f, partials);
    TL_CUDA_LAUNCH_CHECK();
  }
  launchFinishScalar(cb.stream(), partials, nb, out, ep);
}

// Validates r.idx[0..n) ⊂ [0, limit) on the device before any output is written; on failure throws naming the first
// bad position and its value (kargs::failIndex). Costs one stream sync (the result must reach the host to throw).
void checkIndicesOnDevice(KernelCall& c, const IndexRange& r);

// Row-major C (M,N) = op(A)·op(B) + beta·C via column-major cuBLAS (the dense and conv2d kernels' GEMM).
// A is (M,K) row-major (or (K,M) if transA), B is (K,N) (or (N,K) if transB); lda/ldb/ldc are row strides.
void gemmRowMajor(KernelCall& c, bool transA, bool transB, int M, int N, int K, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);

// y (rows, cols): every row = b (cols), on the backend's stream (the bias seed of dense and conv2d); rows·cols > 0.
void launchBroadcastRows(KernelCall& c, const float* b, float* y, int64_t rows, int64_t cols);

}  // namespace cudak
}  // namespace tl
