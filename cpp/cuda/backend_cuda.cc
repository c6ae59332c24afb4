// The CUDA backend: device memory (cudaMalloc), stream-ordered copies, and the kernels of cpp/cuda/kernels_*.cu.
#include "backend_cuda.h"

#include <cstdlib>
#include <cstring>

#include "../registry.h"
#include "../startup.h"
#include "cuda_check.h"
#include "gpu_api.h"
#include "p2p.h"

namespace tl {

CudaBackend::CudaBackend(int index) : index_(index) {}

CudaBackend::~CudaBackend() {
  // No throwing here: best-effort teardown (the device thread has already drained its queue).
  if (!stream_) return;
  cudaSetDevice(index_);
  cudaStreamSynchronize(stream_);
  if (blas_) cublasDestroy(blas_);
  if (scratch_) cudaFree(scratch_);
  if (hostStage_) cudaFreeHost(hostStage_);
  cudaStreamDestroy(stream_);
  cudaGetLastError();
}

void CudaBackend::ensureInit() {
  std::call_once(init_, [this] {
    TL_CUDA_CHECK(cudaSetDevice(index_));
    TL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    TL_CUBLAS_CHECK(cublasCreate(&blas_));
    TL_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    // FP32 GEMMs stay IEEE FP32 unless the user opts into TF32 (10-bit mantissa breaks the 1e-5 contract).
    const char* tf32 = std::getenv("TOWERLINE_TF32");
    const bool useTf32 = tf32 && std::strcmp(tf32, "1") == 0;
    TL_CUBLAS_CHECK(cublasSetMathMode(blas_, useTf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  });
}

void CudaBackend::bindThread() {
  TL_CUDA_CHECK(cudaSetDevice(index_));
  ensureInit();
}

void* CudaBackend::alloc(size_t bytes) {
  TL_CUDA_CHECK(cudaSetDevice(index_));  // may run on the JS thread
  ensureInit();
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    TL_FAIL("alloc on " << name() << ": cudaMalloc of " << bytes << " bytes failed (" << cudaGetErrorString(e)
                        << "); " << freeB << " of " << totalB << " bytes free");
  }
  TL_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  return p;
}

void CudaBackend::free(void* p) {
  if (!p) return;
  // Any thread: bind the device first. cudaFree waits for pending work on the device, so in-flight kernels finish.
  cudaSetDevice(index_);
  cudaError_t e = cudaFree(p);
  TL_CHECK(e == cudaSuccess, "free on " << name() << ": cudaFree failed: " << cudaGetErrorString(e));
}

// Pageable host memory: async on our stream then wait, so the host buffer is safe to reuse on return.
void CudaBackend::copyIn(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  TL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  TL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copyOut(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  TL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  TL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::readBack(void* host, const void* dev, size_t bytes) { copyOut(host, dev, bytes); }

void CudaBackend::copyWithin(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  auto d = static_cast<char*>(dst);
  auto s = static_cast<const char*>(src);
  if (d < s + bytes && s < d + bytes) {
    // Overlapping ranges (memmove semantics, as on cpu): stage through scratch, since cudaMemcpy may not overlap.
    void* tmp = scratch(bytes);
    TL_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream_));
    TL_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  TL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::sync() { TL_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void* CudaBackend::scratch(size_t bytes) {
  if (bytes <= scratchBytes_) return scratch_;
  size_t want = scratchBytes_ ? scratchBytes_ : size_t(1) << 16;
  while (want < bytes) want *= 2;
  if (scratch_) {
    TL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued kernels may still use the old scratch
    TL_CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    scratchBytes_ = 0;
  }
  TL_CUDA_CHECK(cudaMalloc(&scratch_, want));
  scratchBytes_ = want;
  return scratch_;
}

void* CudaBackend::hostStage(size_t bytes) {
  if (bytes <= hostStageBytes_) return hostStage_;
  if (hostStage_) {
    TL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // a queued H2D copy may still read the old stage
    TL_CUDA_CHECK(cudaFreeHost(hostStage_));
    hostStage_ = nullptr;
    hostStageBytes_ = 0;
  }
  // Portable: pinned for every GPU's context, since the stage is filled from the source tower's GPU.
  TL_CUDA_CHECK(cudaHostAlloc(&hostStage_, bytes, cudaHostAllocPortable));
  hostStageBytes_ = bytes;
  return hostStage_;
}

const KernelTable& CudaBackend::kernels() const { return cudaKernels(); }

KernelTable& cudak::cudaKernelTable() {
  static KernelTable table;
  return table;
}

// Every kernel registered itself where it is defined (TL_CUDA_KERNEL in kernels_*.cu; Note [Kernel registry]).
const KernelTable& cudaKernels() { return cudak::cudaKernelTable(); }

// Number of usable GPUs; 0 (not an error) when there is no driver or no device.
static int cudaDeviceCountOrZero() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it so later calls do not report it
    return 0;
  }
  return n;
}

// The addon's GPU inspection in builds with this backend (Note [GPU inspection hook] in cpp/gpu_inspect.h).
class CudaInspector final : public gpu::Inspector {
 public:
  gpu::Topology topology() const override { return gpu::topology(); }
  std::vector<gpu::PairResult> p2pSelfTest(const std::vector<int>& idx) const override { return gpu::p2pSelfTest(idx); }
  void setP2PEnabled(bool enabled) const override { gpu::setP2PEnabled(enabled); }
};

void registerCudaBackend() {
  Registry::get().registerBackend(
      "cuda",
      [](int index) -> std::unique_ptr<Backend> {
        const int n = cudaDeviceCountOrZero();
        TL_CHECK(n > 0, "cuda:" << index << " cannot be opened: no CUDA GPU or driver is available on this machine");
        TL_CHECK(index >= 0 && index < n, "cuda device index must be in [0, " << n << "), got " << index);
        return std::make_unique<CudaBackend>(index);
      },
      cudaDeviceCountOrZero);
  gpu::registerCudaTransports();  // cuda-p2p and cuda-staged, ahead of host-memory (Note [CUDA transports])
  static const CudaInspector inspector;
  gpu::setInspector(&inspector);
}

// Linked into the addon, this backend registers itself at start-up (Note [Backend start-up hooks]).
static const bool kRegistered = addStartupHook(registerCudaBackend);

}  // namespace tl
