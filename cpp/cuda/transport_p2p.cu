// The CUDA peer transport (same-GPU device memory, or direct P2P between GPUs) and the f32 add kernel both CUDA
// transports share. See Note [CUDA transports] in p2p.h.
#include <algorithm>

#include "kernels_common.cuh"
#include "p2p.h"

namespace tl {
namespace gpu {

namespace {

// dst[i] = dst[i] + src[i]: one rounding per element, exactly as the host-memory transport's `d[i] += s[i]`, so
// replicas reduced on GPUs are bit-identical to the same schedule on CPUs. float4 where both are 16-byte aligned.
__global__ void addKernel(float* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  TL_GRID_STRIDE(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}

__global__ void addKernel4(float4* __restrict__ dst, const float4* __restrict__ src, int64_t n4) {
  TL_GRID_STRIDE(i, n4) {
    float4 d = dst[i];
    const float4 s = src[i];
    d.x = __fadd_rn(d.x, s.x);
    d.y = __fadd_rn(d.y, s.y);
    d.z = __fadd_rn(d.z, s.z);
    d.w = __fadd_rn(d.w, s.w);
    dst[i] = d;
  }
}

// Chunks larger than this go through dst's scratch in pieces: scratch stays bounded, and reusing it piece after
// piece needs no host sync (the copy into it is stream-ordered after the add that read the previous piece).
constexpr size_t kPieceBytes = size_t(16) << 20;

class CudaP2PTransport final : public Transport {
 public:
  const char* name() const override { return "cuda-p2p"; }

  bool canConnect(Device& dst, Device& src) const override {
    if (dst.backend().kind() != "cuda" || src.backend().kind() != "cuda") return false;
    return p2pUsable(cudaBackendOf(dst).index(), cudaBackendOf(src).index());
  }

  void copy(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    CudaBackend& d = cudaBackendOf(*dst.device);
    const int si = cudaBackendOf(*src.device).index();
    if (length <= 0) return;
    float* dp = static_cast<float*>(dst.data) + offset;
    const float* sp = static_cast<const float*>(src.data) + offset;
    const size_t bytes = static_cast<size_t>(length) * sizeof(float);
    if (si == d.index()) {
      TL_CUDA_CHECK(cudaMemcpyAsync(dp, sp, bytes, cudaMemcpyDeviceToDevice, d.stream()));
    } else if (p2pUsable(d.index(), si)) {
      TL_CUDA_CHECK(cudaMemcpyPeerAsync(dp, d.index(), sp, si, bytes, d.stream()));
    } else {
      // P2P was disabled after this communicator chose us (self-test failure, setP2PEnabled(false)).
      stagedMove(d, dp, si, sp, bytes, false);
      return;
    }
    TL_CUDA_CHECK(cudaStreamSynchronize(d.stream()));  // done before this tower reaches the phase barrier
  }

  void reduce(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    CudaBackend& d = cudaBackendOf(*dst.device);
    const int si = cudaBackendOf(*src.device).index();
    if (length <= 0) return;
    float* dp = static_cast<float*>(dst.data) + offset;
    const float* sp = static_cast<const float*>(src.data) + offset;
    const size_t bytes = static_cast<size_t>(length) * sizeof(float);
    if (si == d.index()) {
      launchAdd(dp, sp, length, d.stream());  // same GPU: read the other tower's memory directly
    } else if (p2pUsable(d.index(), si)) {
      const size_t piece = std::min(bytes, kPieceBytes);
      float* recv = static_cast<float*>(d.scratch(piece));
      for (size_t off = 0; off < bytes; off += piece) {
        const size_t n = std::min(piece, bytes - off);
        TL_CUDA_CHECK(cudaMemcpyPeerAsync(recv, d.index(), sp + off / 4, si, n, d.stream()));
        launchAdd(dp + off / 4, recv, static_cast<int64_t>(n / 4), d.stream());
      }
    } else {
      stagedMove(d, dp, si, sp, bytes, true);
      return;
    }
    TL_CUDA_CHECK(cudaStreamSynchronize(d.stream()));
  }
};

}  // namespace

void launchAdd(float* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  // Chunks start at arbitrary element offsets, but dst and src are usually equally misaligned (the same offset
  // into equally aligned buffers): add the few head elements alone, then the rest as float4.
  const uintptr_t da = reinterpret_cast<uintptr_t>(dst) % 16, sa = reinterpret_cast<uintptr_t>(src) % 16;
  if (da == sa && da % 4 == 0 && da != 0 && n > 8) {
    const int64_t head = static_cast<int64_t>((16 - da) / 4);
    addKernel<<<1, 32, 0, stream>>>(dst, src, head);
    TL_CUDA_LAUNCH_CHECK();
    dst += head;
    src += head;
    n -= head;
  }
  const bool aligned = (reinterpret_cast<uintptr_t>(dst) % 16 == 0) && (reinterpret_cast<uintptr_t>(src) % 16 == 0);
  if (aligned && n >= 4) {
    const int64_t n4 = n / 4;
    addKernel4<<<cudak::gridFor(n4), cudak::kThreads, 0, stream>>>(reinterpret_cast<float4*>(dst),
                                                                     reinterpret_cast<const float4*>(src), n4);
    TL_CUDA_LAUNCH_CHECK();
    const int64_t done = n4 * 4;
    if (done < n) {
      addKernel<<<1, cudak::kThreads, 0, stream>>>(dst + done, src + done, n - done);
      TL_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  addKernel<<<cudak::gridFor(n), cudak::kThreads, 0, stream>>>(dst, src, n);
  TL_CUDA_LAUNCH_CHECK();
}

const Transport& p2pTransport() {
  static CudaP2PTransport t;
  return t;
}

void registerCudaTransports() {
  // Preference: cuda-p2p, then cuda-staged, then whatever was there (host-memory for CPU towers).
  addTransport(&stagedTransport(), true);
  addTransport(&p2pTransport(), true);
}

}  // namespace gpu
}  // namespace tl
