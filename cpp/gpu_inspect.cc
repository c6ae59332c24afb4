// The GPU inspection defaults (no GPU backend) and the hook a GPU backend installs its own through.
#include "gpu_inspect.h"

#include <atomic>

#include "check.h"

namespace tl {
namespace gpu {

Topology Inspector::topology() const { return Topology{}; }

std::vector<PairResult> Inspector::p2pSelfTest(const std::vector<int>& gpuIndices) const {
  TL_CHECK(gpuIndices.empty(), "p2pSelfTest: this build has no CUDA backend (no GPU to test); use cpu devices");
  return {};
}

void Inspector::setP2PEnabled(bool) const {}

namespace {
const Inspector kDefaults;
std::atomic<const Inspector*> installed{&kDefaults};
}  // namespace

const Inspector& inspector() { return *installed.load(); }

void setInspector(const Inspector* i) { installed.store(i ? i : &kDefaults); }

}  // namespace gpu
}  // namespace tl
