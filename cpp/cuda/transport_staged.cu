// The host-staged CUDA transport: GPU pairs without (or with disabled) P2P move chunks through pinned host memory.
// See Note [CUDA transports] in p2p.h.
#include <algorithm>

#include "cuda_check.h"
#include "p2p.h"

namespace tl {
namespace gpu {

namespace {

// Pinned stage per destination tower (CudaBackend::hostStage); bounded, the chunk goes through it piece by piece.
constexpr size_t kStageBytes = size_t(8) << 20;

class CudaStagedTransport final : public Transport {
 public:
  const char* name() const override { return "cuda-staged"; }

  bool canConnect(Device& dst, Device& src) const override {
    return dst.backend().kind() == "cuda" && src.backend().kind() == "cuda";
  }

  void copy(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    move(dst, src, offset, length, false);
  }

  void reduce(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    move(dst, src, offset, length, true);
  }

 private:
  static void move(Buffer& dst, Buffer& src, int64_t offset, int64_t length, bool add) {
    if (length <= 0) return;
    CudaBackend& d = cudaBackendOf(*dst.device);
    const int si = cudaBackendOf(*src.device).index();
    stagedMove(d, static_cast<float*>(dst.data) + offset, si, static_cast<const float*>(src.data) + offset,
               static_cast<size_t>(length) * sizeof(float), add);
  }
};

}  // namespace

// Runs on dst's device thread (current device = dst's GPU). Per piece:
//   1. cudaMemcpy D2H from the source GPU into the pinned stage, with the source GPU current. It is synchronous
//      and runs on the source GPU's legacy default stream, which does not wait for (or block) the towers'
//      non-blocking streams; the source's data is complete (Note [CUDA transports]), so no stream order is needed.
//      No peer mapping is involved: the bytes cross PCIe twice, through host memory, by the copy engines.
//   2. cudaMemcpyAsync H2D on dst's stream into dst's chunk (copy) or dst's scratch followed by the add kernel.
//   3. dst's stream is synchronised before the stage is reused (next piece) and before the phase barrier.
// Correctness first: no double buffering, so D2H and H2D do not overlap.
void stagedMove(CudaBackend& dst, void* dstPtr, int srcDev, const void* srcPtr, size_t bytes, bool add) {
  if (bytes == 0) return;
  const size_t piece = std::min(bytes, kStageBytes);
  char* host = static_cast<char*>(dst.hostStage(piece));
  float* recv = add ? static_cast<float*>(dst.scratch(piece)) : nullptr;
  auto* dp = static_cast<char*>(dstPtr);
  const auto* sp = static_cast<const char*>(srcPtr);
  for (size_t off = 0; off < bytes; off += piece) {
    const size_t n = std::min(piece, bytes - off);
    {
      DeviceGuard g(srcDev);
      TL_CUDA_CHECK(cudaMemcpy(host, sp + off, n, cudaMemcpyDeviceToHost));
    }
    if (add) {
      TL_CUDA_CHECK(cudaMemcpyAsync(recv, host, n, cudaMemcpyHostToDevice, dst.stream()));
      launchAdd(reinterpret_cast<float*>(dp + off), recv, static_cast<int64_t>(n / sizeof(float)), dst.stream());
    } else {
      TL_CUDA_CHECK(cudaMemcpyAsync(dp + off, host, n, cudaMemcpyHostToDevice, dst.stream()));
    }
    TL_CUDA_CHECK(cudaStreamSynchronize(dst.stream()));
  }
}

const Transport& stagedTransport() {
  static CudaStagedTransport t;
  return t;
}

}  // namespace gpu
}  // namespace tl
