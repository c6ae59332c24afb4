// Attrs and KernelCall helpers: attribute reads and the error context shared by every kernel of every backend.
#include "kernel.h"

#include <cmath>

#include "backend.h"

namespace tl {

// Note [Kernel registry]: each backend kind owns one KernelTable (name -> function), filled when the library loads:
// every kernel is defined with its backend's TL_KERNEL macro (TL_CPU_KERNEL, TL_CUDA_KERNEL), which registers it
// under its own name, so there is no list of kernels to keep in step (cpuKernels(), cudaKernels()). A program
// resolves every op's name against its device's table when it is compiled, so an
// unknown kernel fails at compile time naming the device, and running a program costs no lookups. The names,
// arguments and semantics are the contract table (Note [Kernel contracts] in kernel_contract.h, rendered as
// docs/kernels.md); src/reference/kernels.ts implements the same names in float64, test/contract.test.ts checks
// its signatures against the table, and test/kernels.test.ts checks every registered kernel against it.

double Attrs::get(const std::string& k) const {
  auto it = values.find(k);
  TL_CHECK(it != values.end(), "missing attribute '" << k << "' (given: " << (values.empty() ? "none" : describe())
                                                     << "); pass it in the op's attrs");
  return it->second;
}

int64_t Attrs::dim(const std::string& k) const {
  double v = get(k);
  TL_CHECK(std::isfinite(v) && v >= 0 && std::floor(v) == v && v < 9.0e15,
           "attribute '" << k << "' must be a non-negative integer, got " << v);
  return static_cast<int64_t>(v);
}

std::string Attrs::describe() const {
  std::ostringstream os;
  bool first = true;
  for (const auto& kv : values) {
    if (!first) os << ' ';
    first = false;
    os << kv.first << '=' << kv.second;
  }
  return os.str();
}

std::string KernelCall::context() const {
  std::ostringstream os;
  os << op << " on " << device.name();
  if (!attrs.values.empty()) os << " (" << attrs.describe() << ")";
  return os.str();
}

void KernelCall::fail(const std::string& what, const char* file, int line) const {
  throw Error(context() + ": " + what, file, line);
}

}  // namespace tl
