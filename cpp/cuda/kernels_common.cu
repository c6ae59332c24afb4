// Out-of-line parts of kernels_common.cuh: the scalar-reduction finish, the device-side index range check, GEMM.
#include <algorithm>
#include <climits>

#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// partials (nb) -> out (1); nb may be 0 (empty input): the epilogue still runs.
__global__ void finishScalarKernel(const double* partials, int nb, float* out, ScalarEpilogue ep) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < nb; i += blockDim.x) acc += partials[i];
  acc = blockReduce(acc, SumOp{}, 0.0);
  if (threadIdx.x == 0) {
    const double w = ep.hyper ? (double)ep.hyper[kHyperGradScale] : 1.0;
    const double base = ep.keep ? (double)out[0] : 0.0;
    out[0] = (float)(base + ep.coef * w * acc);
  }
}

void launchFinishScalar(cudaStream_t s, const double* partials, int nb, float* out, ScalarEpilogue ep) {
  finishScalarKernel<<<1, kThreads, 0, s>>>(partials, nb, out, ep);
  TL_CUDA_LAUNCH_CHECK();
}

// firstBad = min position i with idx[i] outside [0, limit); stays ~0 when all are in range.
__global__ void rangeCheckKernel(const int32_t* idx, int64_t n, int64_t limit, unsigned long long* firstBad) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int32_t v = idx[i];
    if (v < 0 || (int64_t)v >= limit) atomicMin(firstBad, (unsigned long long)i);
  }
}

void checkIndicesOnDevice(KernelCall& c, const IndexRange& r) {
  if (r.n <= 0) return;
  CudaBackend& cb = cudaOf(c);
  auto* firstBad = static_cast<unsigned long long*>(cb.scratch(sizeof(unsigned long long)));
  TL_CUDA_CHECK(cudaMemsetAsync(firstBad, 0xff, sizeof(unsigned long long), cb.stream()));
  const int32_t* idx = r.values(c);
  rangeCheckKernel<<<gridFor(r.n), kThreads, 0, cb.stream()>>>(idx, r.n, r.limit, firstBad);
  TL_CUDA_LAUNCH_CHECK();
  unsigned long long bad = 0;
  cb.readBack(&bad, firstBad, sizeof bad);  // syncs the stream
  if (bad == ~0ull) return;
  int32_t value = 0;
  cb.readBack(&value, idx + bad, sizeof value);
  failIndex(c, r, (int64_t)bad, value);
}

// Row-major C = op(A)·op(B) via column-major cuBLAS: a row-major (R,K) matrix is column-major (K,R), so we compute
// Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. swap the operands and keep the transpose flags.
void gemmRowMajor(KernelCall& c, bool transA, bool transB, int M, int N, int K, const float* A, int lda,
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

__global__ void broadcastRowsKernel(const float* __restrict__ b, float* __restrict__ y, int64_t rows, int64_t cols) {
  TL_GRID_STRIDE(i, rows * cols) y[i] = b[i % cols];
}

void launchBroadcastRows(KernelCall& c, const float* b, float* y, int64_t rows, int64_t cols) {
  broadcastRowsKernel<<<gridFor(rows * cols), kThreads, 0, cudaOf(c).stream()>>>(b, y, rows, cols);
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
