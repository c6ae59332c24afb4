// Error-check macros for the CUDA backend: every failing CUDA/cuBLAS call becomes a tl::Error (never an abort).
#pragma once
#include <cuda_runtime.h>

#include <sstream>
#include <string>

#include "../check.h"
#include "cublas_include.h"

namespace tl {
namespace cudak {

// "cuda:N" of the calling thread's current device, for messages (only evaluated on failure).
inline std::string currentDeviceName() {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) return "cuda:?";
  return "cuda:" + std::to_string(d);
}

[[noreturn]] inline void throwCuda(cudaError_t e, const char* expr, const char* file, int line) {
  std::ostringstream os;
  os << "CUDA error " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ") in `" << expr << "` on "
     << currentDeviceName() << " at " << file << ":" << line;
  throw Error(os.str(), file, line);
}

[[noreturn]] inline void throwCublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  std::ostringstream os;
  os << "cuBLAS error " << cublasGetStatusName(s) << " (" << cublasGetStatusString(s) << ") in `" << expr << "` on "
     << currentDeviceName() << " at " << file << ":" << line;
  throw Error(os.str(), file, line);
}

}  // namespace cudak
}  // namespace tl

#define TL_CUDA_CHECK(expr)                                                          \
  do {                                                                               \
    cudaError_t tl_cuda_e_ = (expr);                                                 \
    if (tl_cuda_e_ != cudaSuccess) ::tl::cudak::throwCuda(tl_cuda_e_, #expr, __FILE__, __LINE__); \
  } while (0)

#define TL_CUBLAS_CHECK(expr)                                                        \
  do {                                                                               \
    cublasStatus_t tl_cublas_s_ = (expr);                                            \
    if (tl_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::tl::cudak::throwCublas(tl_cublas_s_, #expr, __FILE__, __LINE__);             \
  } while (0)

// After every kernel launch: reports a bad launch configuration (and any earlier sticky error) at the call site.
#define TL_CUDA_LAUNCH_CHECK() TL_CUDA_CHECK(cudaGetLastError())
