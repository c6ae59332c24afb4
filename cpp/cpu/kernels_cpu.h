// Shared helpers for the CPU kernel files: the host-side index scan, and TL_CPU_KERNEL (Note [Kernel registry]).
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>

#include "../dropout_hash.h"
#include "../hyper.h"
#include "../kernel.h"
#include "../kernel_args.h"
#include "gemm.h"

namespace tl {
namespace cpuk {

using namespace kargs;  // the parsed arguments every kernel reads (cpp/kernel_args.h), shared with CUDA

// Validates that every label/index of r lies in [0, limit) before any output is written (host memory).
inline void checkIndices(const KernelCall& c, const IndexRange& r) {
  const int32_t* idx = r.values(c);
  for (int64_t i = 0; i < r.n; ++i)
    if (idx[i] < 0 || idx[i] >= r.limit) failIndex(c, r, i, idx[i]);
}

// Rows [0, n) of `width` floats each, in blocks of about 32K floats (cut by n and width alone): f(r0, r1) per block,
// spread over the device's GEMM threads (gemmForEach) when the whole is at least kFanOutFloats, else all on the
// calling thread. For kernels whose rows are independent, so any thread count gives the same bits; f must not call
// sgemm(). Below kFanOutFloats (1 MiB of floats) a pass is a few microseconds from cache, about what a hand-off to the
// pool costs when its thread is spinning, and far less than one that finds it asleep or descheduled (a relu over
// 128x500 took 4.6 us alone and 21-70 us handed to 2 threads on a loaded machine; issue 16's profile).
constexpr int64_t kFanOutFloats = int64_t(1) << 18;
inline void forEachRowBlock(int64_t n, int64_t width, const std::function<void(int64_t, int64_t)>& f,
                            int64_t fanOutFloats = kFanOutFloats) {
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(width, 1));
  const int64_t blocks = (n + block - 1) / block;
  const auto one = [&](int i) { f(i * block, std::min(n, (i + 1) * block)); };
  if (n * std::max<int64_t>(width, 1) >= fanOutFloats)
    gemmForEach((int)blocks, one);
  else
    for (int i = 0; i < (int)blocks; ++i) one(i);
}

// The table CPU kernels add themselves to (cpuKernels() in backend.h is the same table, read-only).
KernelTable& cpuKernelTable();

// Defines a CPU kernel and registers it under its name.
#define TL_CPU_KERNEL(name) TL_KERNEL(::tl::cpuk::cpuKernelTable, name)

}  // namespace cpuk
}  // namespace tl
