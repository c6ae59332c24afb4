// The CUDA backend's GPU inspection (topology, P2P self-test, the P2P switch), installed as the addon's
// gpu::Inspector when the backend registers (Note [GPU inspection hook] in cpp/gpu_inspect.h). Plain C++.
#pragma once
#include <string>
#include <vector>

#include "../gpu_inspect.h"

namespace tl {
namespace gpu {

// Copies known patterns (8 MB) both ways between every ordered pair of the distinct indices given, on the path the
// transports would use, compares on the host and measures bandwidth. A corrupted pair has P2P disabled for the rest
// of the process (the host-staged transport takes over). Throws on indices outside [0, cudaGetDeviceCount).
std::vector<PairResult> p2pSelfTest(const std::vector<int>& gpuIndices);

// Process-wide switch for direct P2P between different GPUs (TOWERLINE_P2P=0 in the environment turns it off at
// start-up). Towers on the same GPU always exchange through device memory.
void setP2PEnabled(bool enabled);
bool p2pEnabled();

// Never throws: no driver or no GPU gives an empty topology.
Topology topology();

}  // namespace gpu
}  // namespace tl
