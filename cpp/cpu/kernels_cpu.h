// Shared helpers for the CPU kernel files: the host-side index scan, a sum of squares, and per-file registration.
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

void registerLayerKernels(KernelTable& t);
void registerElementwiseKernels(KernelTable& t);
void registerOptimKernels(KernelTable& t);
void registerInputKernels(KernelTable& t);
void registerImageInputKernels(KernelTable& t);
void registerConvKernels(KernelTable& t);
void registerReplicaKernels(KernelTable& t);

}  // namespace cpuk
}  // namespace tl
