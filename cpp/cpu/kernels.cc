// The CPU kernel table: every kernel of docs/kernels.md, registered by name (implementations in kernels_*.cc).
#include "../backend.h"
#include "kernels_cpu.h"

namespace tl {

const KernelTable& cpuKernels() {
  static const KernelTable table = [] {
    KernelTable t;
    cpuk::registerLayerKernels(t);
    cpuk::registerElementwiseKernels(t);
    cpuk::registerOptimKernels(t);
    cpuk::registerInputKernels(t);
    cpuk::registerImageInputKernels(t);
    cpuk::registerConvKernels(t);
    cpuk::registerReplicaKernels(t);
    return t;
  }();
  return table;
}

}  // namespace tl
