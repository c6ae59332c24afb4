// Internal pieces shared by the CUDA transports, the P2P self-test and the topology query.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../collective/transport.h"
#include "backend_cuda.h"
#include "gpu_api.h"

namespace tl {
namespace gpu {

// Note [CUDA transports]: a collective step runs on the destination tower's device thread and reads the source
// tower's buffer. Two transports cover pairs of CUDA towers, ahead of the host-memory one in the table:
//
//   cuda-p2p     same GPU (several towers on one GPU: plain device memory, always), or two GPUs whose peer access
//                is supported both ways, allowed (TOWERLINE_P2P, setP2PEnabled) and passed the self-test. Copy:
//                cudaMemcpyAsync D2D / cudaMemcpyPeerAsync on dst's stream. Reduce: same GPU, a kernel adds src
//                into dst directly; two GPUs, the chunk is first DMA'd by cudaMemcpyPeerAsync into dst's scratch
//                (the very path the self-test checks) and then added there.
//   cuda-staged  any other pair of CUDA towers: explicitly through pinned host memory (cudaMemcpy D2H from the
//                source GPU, then H2D on dst's stream), never a peer mapping: the safe path for a pair whose P2P
//                corrupted data (seed 000) or has none.
//
// Why stream order on dst alone is enough: the source's data was produced by its own stream, and Program::
// executeOps syncs that stream (dev.sync()) before the tower enters the collective; every transport step ends
// with a sync of dst's stream before the tower reaches the next phase barrier; the barrier is a host-side
// happens-before between all ranks. So when dst enqueues a read of src's chunk, src's writes are complete, and
// src does not write that chunk again until every rank has passed the barrier that follows this phase
// (validateSchedule forbids a write and a read of one range in one phase).

// The CUDA backend of a device (its kind must be "cuda").
CudaBackend& cudaBackendOf(Device& d);

// Current-device guard: sets `index` for its scope and restores the previous device (also on throw).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// cudaDeviceCanAccessPeer in both directions (cached per pair).
bool peerCapable(int a, int b);
// P2P for (dst <- src): same GPU, or enabled, capable, not disabled and the direction passed the self-test (run
// here, once per direction, when not yet done: the first communicator over a pair pays ~tens of ms).
bool p2pUsable(int dst, int src);
// Why P2P is not used for the pair, for messages ("" when it is).
std::string p2pBlockedReason(int dst, int src);
// Disables P2P between a and b (both directions) for the rest of the process, and the peer mappings with it.
void disablePair(int a, int b, const std::string& why);
// The pair's disable reason, "" when not disabled.
std::string pairDisabledReason(int a, int b);
// cudaDeviceEnablePeerAccess both ways, once per pair (already-enabled is fine).
void enablePeerAccess(int a, int b);

// One direction of the self-test: patterns src -> dst over the path the transports use (P2P or staged).
PairResult testDirection(int src, int dst, bool measure);

// dst[i] = dst[i] + src[i] (f32, no contraction: bit-identical to the CPU transport's loop) on `stream`.
void launchAdd(float* dst, const float* src, int64_t n, cudaStream_t stream);

// Moves `bytes` from src (on GPU srcDev) to dst (on GPU dstDev) through pinned host memory; when `add`, dst += src
// (f32) instead, using dst backend's scratch. Runs on dst's device thread; ends with dst's stream synchronised.
void stagedMove(CudaBackend& dst, void* dstPtr, int srcDev, const void* srcPtr, size_t bytes, bool add);

const Transport& p2pTransport();
const Transport& stagedTransport();
// Puts both CUDA transports at the front of the transport table (called by registerCudaBackend).
void registerCudaTransports();

}  // namespace gpu
}  // namespace tl
