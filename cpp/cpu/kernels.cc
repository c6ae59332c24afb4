// The CPU kernel table: every kernel of the contract (docs/kernels.md), each registered where it is defined
// (TL_CPU_KERNEL in kernels_*.cc; Note [Kernel registry]).
#include "../backend.h"
#include "kernels_cpu.h"

namespace tl {

KernelTable& cpuk::cpuKernelTable() {
  static KernelTable table;
  return table;
}

const KernelTable& cpuKernels() { return cpuk::cpuKernelTable(); }

}  // namespace tl
