// What a GPU backend can tell about the machine's GPUs (topology, the P2P self-test, the P2P switch), and the hook
// through which it says it: core code and the N-API bindings (napi/gpu.cc) see only this, never CUDA.
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

// Note [GPU inspection hook]: the addon always exports topology(), p2pSelfTest() and setP2PEnabled(); what they do
// comes from the inspector a GPU backend installs when it registers (the CUDA backend: cpp/cuda/backend_cuda.cc).
// Without one, the defaults below answer: no GPUs, an empty self-test for [], an error naming the missing backend
// for any GPU index, and a switch that does nothing.
class Inspector {
 public:
  virtual ~Inspector() = default;
  // Never throws: no driver or no GPU gives an empty topology.
  virtual Topology topology() const;
  // One result per ordered pair of the distinct indices; throws for indices that do not exist.
  virtual std::vector<PairResult> p2pSelfTest(const std::vector<int>& gpuIndices) const;
  // Direct P2P between different GPUs on/off for the rest of the process.
  virtual void setP2PEnabled(bool enabled) const;
};

// The installed inspector (the defaults when no GPU backend installed one).
const Inspector& inspector();
// Called by a GPU backend when it registers; the inspector must live for the rest of the process.
void setInspector(const Inspector* i);

}  // namespace gpu
}  // namespace tl
