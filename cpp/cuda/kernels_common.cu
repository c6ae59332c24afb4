// Out-of-line parts of kernels_common.cuh: the scalar-reduction finish and the device-side index range check.
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
    const double w = ep.hyper ? (double)ep.hyper[2] : 1.0;
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

void checkIndicesOnDevice(KernelCall& c, const int32_t* idx, int64_t n, int64_t limit, const char* what,
                          const char* row, const char* range) {
  if (n <= 0) return;
  CudaBackend& cb = cudaOf(c);
  auto* firstBad = static_cast<unsigned long long*>(cb.scratch(sizeof(unsigned long long)));
  TL_CUDA_CHECK(cudaMemsetAsync(firstBad, 0xff, sizeof(unsigned long long), cb.stream()));
  rangeCheckKernel<<<gridFor(n), kThreads, 0, cb.stream()>>>(idx, n, limit, firstBad);
  TL_CUDA_LAUNCH_CHECK();
  unsigned long long bad = 0;
  cb.readBack(&bad, firstBad, sizeof bad);  // syncs the stream
  if (bad == ~0ull) return;
  int32_t value = 0;
  cb.readBack(&value, idx + bad, sizeof value);
  TL_KCHECK(c, false, what << " at " << row << "=" << bad << " is " << value << ", outside [0, " << range << "="
                           << limit << ")");
}

}  // namespace cudak
}  // namespace tl
