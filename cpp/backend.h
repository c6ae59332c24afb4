// The one Backend interface: memory, copies, synchronisation and kernels by name. cpu and cuda implement it.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

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
  virtual void sync() = 0;  // waits for all work queued on this device
  virtual const KernelTable& kernels() const = 0;
  // Called once on the device's own thread before any other call (CUDA binds its context here).
  virtual void bindThread() {}
};

// Factories; each backend lives in its own directory (cpp/cpu, cpp/cuda).
std::unique_ptr<Backend> makeCpuBackend(int index);
const KernelTable& cpuKernels();
// Registers the "cpu" device kind (always built); optional backends register through start-up hooks (startup.h).
void registerCpuBackend();

}  // namespace tl
