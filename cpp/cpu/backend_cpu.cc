// The CPU backend: host memory, memcpy, and the kernels of cpp/cpu/kernels*.cc; always built.
#include <cstdlib>
#include <cstring>
#include <thread>

#include "backend.h"
#include "gemm.h"

namespace tl {

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int index) : index_(index) {}
  std::string name() const override { return "cpu:" + std::to_string(index_); }
  std::string kind() const override { return "cpu"; }
  bool hostMemory() const override { return true; }
  void* alloc(size_t bytes) override {
    size_t rounded = (bytes + 63) / 64 * 64;  // 64-byte alignment for vector loads
    void* p = std::aligned_alloc(64, rounded);
    TL_CHECK(p != nullptr, "alloc on " << name() << ": out of host memory allocating " << bytes << " bytes");
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
