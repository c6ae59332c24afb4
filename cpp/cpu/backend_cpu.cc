// The CPU backend: host memory, memcpy, and the kernels of cpp/cpu/kernels*.cc; always built.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "backend.h"
#include "../affinity.h"
#include "gemm.h"

namespace tl {

namespace {

// Buffers of 1 MiB and more (data sets, weight, gradient and optimizer arenas) start on a 2 MiB boundary and their
// whole 2 MiB regions sit on 2 MiB pages where the kernel allows (transparent huge pages in 'madvise' mode, Linux's
// common default): the row gather reads rows scattered over a data set far beyond the TLB's reach, and the tail's
// passes stream whole arenas; 4 KiB pages cost a page walk per row or per 4 KiB there (issue 16's profile). The
// size is not rounded up to 2 MiB (a buffer just over 1 MiB used to take 2 MiB): the part after the last whole
// 2 MiB region keeps 4 KiB pages.
constexpr size_t kHuge = size_t(2) << 20, kHugeFrom = size_t(1) << 20;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int index) : index_(index) {}
  std::string name() const override { return "cpu:" + std::to_string(index_); }
  std::string kind() const override { return "cpu"; }
  bool hostMemory() const override { return true; }
  void* alloc(size_t bytes) override {
    const size_t align = bytes >= kHugeFrom ? kHuge : 64;  // 64-byte alignment for vector loads
    const size_t rounded = (bytes + 63) / 64 * 64;         // whole vectors; posix_memalign takes any size
    void* p = nullptr;
    TL_CHECK(posix_memalign(&p, align, rounded) == 0 && p != nullptr, "alloc on " << name() << ": out of host memory allocating " << bytes << " bytes");
    if (align == kHuge && rounded >= kHuge) madvise(p, rounded / kHuge * kHuge, MADV_HUGEPAGE);  // advice only: a failure changes nothing but speed
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
    if (!cpus_.empty() && n != gemm_.size()) setThreadCpus({});  // the placement was made for the old count
    gemm_.resize(n);
  }
  void setThreadCpus(const std::vector<int>& cpus) override {
    TL_CHECK(cpus.empty() || static_cast<int>(cpus.size()) == gemm_.size(),
             "cpus of " << name() << ": expected one CPU per compute thread (the device thread and its " << gemm_.size() - 1
                        << " GEMM workers: " << gemm_.size() << "), got " << cpus.size() << " (" << cpuList(cpus) << ")");
    if (cpus.empty()) {
      if (cpus_.empty()) return;
      pinThread(unpinned_);
      gemm_.setWorkerCpus(std::vector<std::vector<int>>(gemm_.size() - 1, unpinned_));
      cpus_.clear();
      return;
    }
    if (cpus_.empty()) unpinned_ = tl::threadCpus();
    pinThread({cpus[0]});
    std::vector<std::vector<int>> workers;
    for (size_t i = 1; i < cpus.size(); ++i) workers.push_back({cpus[i]});
    gemm_.setWorkerCpus(workers);
    cpus_ = cpus;
    const auto seen = gemm_.workerCpus();
    for (size_t i = 0; i < workers.size(); ++i)
      TL_CHECK(seen[i] == workers[i], "cpus of " << name() << ": GEMM worker " << i + 1 << " could not be pinned to CPU " << workers[i][0]
                                                 << " (it runs on " << cpuList(seen[i]) << "); is that CPU in this process's cpuset?");
  }
  void programBegins() override { gemm_.hold(true); }
  void programEnds() override { gemm_.hold(false); }
  void handOff(std::function<void()> f) override { gemm_.handOff(std::move(f)); }
  bool helperReady() const override { return gemm_.spinning(); }
  std::vector<std::vector<int>> threadCpus() const override {
    std::vector<std::vector<int>> out{tl::threadCpus()};
    for (auto& w : gemm_.workerCpus()) out.push_back(w);
    return out;
  }

 private:
  int index_;
  GemmThreads gemm_;
  std::vector<int> cpus_;      // its placement, empty when unpinned
  std::vector<int> unpinned_;  // the device thread's mask before the placement
};

}  // namespace

std::unique_ptr<Backend> makeCpuBackend(int index) {
  TL_CHECK(index >= 0 && index < 1024, "cpu device index must be in [0, 1024), got " << index);
  return std::make_unique<CpuBackend>(index);
}

}  // namespace tl
