// The CPU backend: host memory, memcpy, and the kernels of cpp/cpu/kernels*.cc; always built.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "backend.h"
#include "gemm.h"

namespace tl {

namespace {

// Buffers of 1 MiB and more (data sets, weight, gradient and optimizer arenas) sit on 2 MiB pages where the kernel
// allows (transparent huge pages in 'madvise' mode, Linux's common default): the row gather reads rows scattered over
// a data set far beyond the TLB's reach, and the tail's passes stream whole arenas; 4 KiB pages cost a page walk per
// row or per 4 KiB there (issue 16's profile). The memory is the same; at most 2 MiB of rounding per such buffer.
constexpr size_t kHuge = size_t(2) << 20, kHugeFrom = size_t(1) << 20;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int index) : index_(index) {}
  std::string name() const override { return "cpu:" + std::to_string(index_); }
  std::string kind() const override { return "cpu"; }
  bool hostMemory() const override { return true; }
  void* alloc(size_t bytes) override {
    const size_t align = bytes >= kHugeFrom ? kHuge : 64;  // 64-byte alignment for vector loads
    size_t rounded = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded);
    TL_CHECK(p != nullptr, "alloc on " << name() << ": out of host memory allocating " << bytes << " bytes");
    if (align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: a failure changes nothing but speed
    std::memset(p, 0, rounded);
    return p;
  }
  void free(void* p) override { std::free(p); }
  void copyIn(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copyOut(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copyWithin(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void sync() override {}
  const KernelTable& kernels() const override { return cpuKernels(); }
  // Every sgemm a kernel calls on this device's thread uses this device's threads (Note [GEMM threads]).
  void bindThread() override { GemmThreads::bind(&gemm_); }
  int gemmThreads() const override { return gemm_.size(); }
  void setGemmThreads(int n) override {
    TL_CHECK(n >= 1 && n <= kMaxGemmThreads, "gemmThreads of " << name() << " must be in [1, " << kMaxGemmThreads << "], got " << n);
    gemm_.resize(n);
  }

 private:
  int index_;
  GemmThreads gemm_;
};

}  // namespace

std::unique_ptr<Backend> makeCpuBackend(int index) {
  TL_CHECK(index >= 0 && index < 1024, "cpu device index must be in [0, 1024), got " << index);
  return std::make_unique<CpuBackend>(index);
}

}  // namespace tl
