// The GPU inspection surface the addon exports (topology, P2P self-test, the P2P switch). Plain C++: addon.cc
// includes it without the CUDA headers, and calls it only in builds with the CUDA backend (TL_HAVE_CUDA_BACKEND).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {
namespace gpu {

// One ordered pair of the P2P self-test (see Note [P2P self-test] in p2p.h).
struct PairResult {
  int src = -1, dst = -1;
  bool p2p = false;   // the path tested (and the one the transports will use) is direct peer-to-peer
  bool ok = false;    // every word arrived intact
  double gbps = 0;    // measured copy bandwidth of that path, 1e9 bytes/s
  std::string detail;
};

// Copies known patterns (8 MB) both ways between every ordered pair of the distinct indices given, on the path the
// transports would use, compares on the host and measures bandwidth. A corrupted pair has P2P disabled for the rest
// of the process (the host-staged transport takes over). Throws on indices outside [0, cudaGetDeviceCount).
std::vector<PairResult> p2pSelfTest(const std::vector<int>& gpuIndices);

// Process-wide switch for direct P2P between different GPUs (TOWERLINE_P2P=0 in the environment turns it off at
// start-up). Towers on the same GPU always exchange through device memory.
void setP2PEnabled(bool enabled);
bool p2pEnabled();

struct GpuInfo {
  int index = 0;
  std::string name, pciBusId;
  int64_t memoryBytes = 0;
};

struct LinkInfo {
  int a = 0, b = 0;   // a <= b; a == b is the SELF entry
  std::string kind;   // SELF, NVLINK, PIX, PXB, PHB, NODE, SYS (NVML) or P2P / NONE (CUDA attributes only)
  bool p2p = false;   // peer access supported both ways and not disabled (option, self-test)
  int perfRank = -1;  // cudaDevP2PAttrPerformanceRank (lower is better), -1 when unknown
  int nvlinks = 0;    // NVLink lanes between the pair (NVML), 0 when none or unknown
  bool atomics = false;  // cudaDevP2PAttrNativeAtomicSupported
};

struct Topology {
  std::vector<GpuInfo> gpus;
  std::vector<LinkInfo> links;
  std::string source = "none";  // "nvml" (link kinds from NVML), "cuda" (CUDA attributes only), "none" (no GPU)
};

// Never throws: no driver or no GPU gives an empty topology.
Topology topology();

}  // namespace gpu
}  // namespace tl
