// Shared helpers for the CPU kernel files: the host-side index scan, and TL_CPU_KERNEL (Note [Kernel registry]).
#pragma once
#include <cstdint>

#include "../dropout_hash.h"
#include "../hyper.h"
#include "../kernel.h"
#include "../kernel_args.h"

namespace tl {
namespace cpuk {

using namespace kargs;  // the parsed arguments every kernel reads (cpp/kernel_args.h), shared with CUDA

// Validates that every label/index of r lies in [0, limit) before any output is written (host memory).
inline void checkIndices(const KernelCall& c, const IndexRange& r) {
  const int32_t* idx = r.values(c);
  for (int64_t i = 0; i < r.n; ++i)
    if (idx[i] < 0 || idx[i] >= r.limit) failIndex(c, r, i, idx[i]);
}

// The table CPU kernels add themselves to (cpuKernels() in backend.h is the same table, read-only).
KernelTable& cpuKernelTable();

// Defines a CPU kernel and registers it under its name.
#define TL_CPU_KERNEL(name) TL_KERNEL(::tl::cpuk::cpuKernelTable, name)

}  // namespace cpuk
}  // namespace tl
