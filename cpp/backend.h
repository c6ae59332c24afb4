// The one Backend interface: memory, copies, synchronisation and kernels by name. cpu and cuda implement it.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernel.h"

namespace tl {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;   // "cpu:0", "cuda:1"
  virtual std::string kind() const = 0;   // "cpu", "cuda"
  virtual void* alloc(size_t bytes) = 0;  // zero-filled
  virtual void free(void* p) = 0;
  virtual void copyIn(void* dst, const void* src, size_t bytes) = 0;   // host -> device
  virtual void copyOut(void* dst, const void* src, size_t bytes) = 0;  // device -> host
  virtual void copyWithin(void* dst, const void* src, size_t bytes) = 0;  // device -> same device
  // Its buffers are plain host memory that any host thread may read and write, so another such device's kernels may
  // work on them directly (Registry::allocShared; Note [Shared weights] in src/model/shard-plan.ts).
  virtual bool hostMemory() const { return false; }
  virtual void sync() = 0;  // waits for all work queued on this device
  virtual const KernelTable& kernels() const = 0;
  // Called once on the device's own thread before any other call (CUDA binds its context here).
  virtual void bindThread() {}
  // Host threads this device's GEMMs use (Note [GEMM threads] in cpu/gemm.cc); called on the device thread. A
  // backend whose products do not run on host threads has 1 and refuses any other count.
  virtual int gemmThreads() const { return 1; }
  virtual void setGemmThreads(int n) {
    TL_CHECK(n == 1, name() << " runs its GEMMs on the device, not on host threads; gemmThreads applies to cpu devices");
  }
  // Pins the device thread to cpus[0] and GEMM worker i to cpus[i] (cpus.size() == gemmThreads()); empty: back to
  // the mask the threads had before (Note [Thread placement] in src/tower-port/thread-placement.ts). On the device thread.
  virtual void setThreadCpus(const std::vector<int>& cpus) {
    TL_CHECK(cpus.empty(), name() << " computes on the device, not on host threads; thread placement (cpus) applies to cpu devices");
  }
  // Around each program run on the device thread (its helper threads may stay ready for its kernels meanwhile).
  virtual void programBegins() {}
  virtual void programEnds() {}
  // Runs f (a task's completion: it wakes the JS thread) on an idle helper thread if one is ready, else at once;
  // in the order handed off. Called on the device thread.
  virtual void handOff(std::function<void()> f) { f(); }
  // Whether a helper thread is spinning now, ready to take a handOff (a hint). On the device thread.
  virtual bool helperReady() const { return false; }
  // Each of its compute threads' CPU masks: the device thread's first, then each GEMM worker's. On the device thread.
  virtual std::vector<std::vector<int>> threadCpus() const { return {}; }
};

// Factories; each backend lives in its own directory (cpp/cpu, cpp/cuda).
std::unique_ptr<Backend> makeCpuBackend(int index);
const KernelTable& cpuKernels();
// Registers the "cpu" device kind (always built); optional backends register through start-up hooks (startup.h).
void registerCpuBackend();

}  // namespace tl
