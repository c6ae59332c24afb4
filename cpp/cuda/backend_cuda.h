// The CUDA backend class: one instance per tower, owning its own stream, cuBLAS handle and scratch memory.
#pragma once
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "../backend.h"
#include "cublas_include.h"

namespace tl {

// Note [CUDA backend threading]: all kernels and copies of one backend run on its device thread, in order on its
// own non-blocking stream, so several backends (towers) may share one GPU. alloc() and free() may be called from
// other threads (JS, or whoever drops the last buffer reference): they set the device first, and alloc() zeroes on
// the stream so the zeros land before any later work of this backend.
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;
  std::string name() const override { return "cuda:" + std::to_string(index_); }
  std::string kind() const override { return "cuda"; }
  void* alloc(size_t bytes) override;
  void free(void* p) override;
  void copyIn(void* dst, const void* src, size_t bytes) override;
  void copyOut(void* dst, const void* src, size_t bytes) override;
  void copyWithin(void* dst, const void* src, size_t bytes) override;
  void sync() override;
  const KernelTable& kernels() const override;
  void bindThread() override;

  // For kernels (device thread only).
  int index() const { return index_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  // Device scratch of at least `bytes`, reused by every kernel (stream order makes that safe); grows on demand.
  void* scratch(size_t bytes);
  // Pinned host memory of at least `bytes` for the host-staged transport (device thread only); grows on demand.
  void* hostStage(size_t bytes);
  // Stream-ordered device -> host read of a few bytes, then waits (used by the label/index range checks).
  void readBack(void* host, const void* dev, size_t bytes);

 private:
  void ensureInit();  // stream, cuBLAS handle, scratch: created once, from whichever thread comes first
  int index_;
  std::once_flag init_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  void* hostStage_ = nullptr;
  size_t hostStageBytes_ = 0;
};

const KernelTable& cudaKernels();
void registerCudaBackend();

namespace cudak {
// The table CUDA kernels add themselves to (TL_CUDA_KERNEL; cudaKernels() is the same table, read-only).
KernelTable& cudaKernelTable();
}  // namespace cudak

}  // namespace tl
