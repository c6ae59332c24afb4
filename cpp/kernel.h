// The kernel calling convention shared by every backend: a kernel is a function of one KernelCall.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "check.h"
#include "tensor.h"

namespace tl {

class Backend;

// Attributes are numbers only (sizes, flags, constants). Shapes travel as attributes (B, I, O, N, ...).
struct Attrs {
  std::map<std::string, double> values;
  bool has(const std::string& k) const { return values.count(k) != 0; }
  double get(const std::string& k) const;                  // throws naming the missing attribute
  double get(const std::string& k, double dflt) const { auto it = values.find(k); return it == values.end() ? dflt : it->second; }
  int64_t dim(const std::string& k) const;                 // integer >= 0, else throws
  std::string describe() const;                            // "B=128 I=784 O=500"
};

struct KernelCall {
  Backend& device;
  const std::string& op;  // kernel name, e.g. "dense_forward"
  std::vector<TensorRef> in;
  std::vector<TensorRef> out;
  const Attrs& attrs;

  // Argument checks used by every kernel. They throw tl::Error naming the device, op, argument and sizes.
  void expectArity(size_t nIn, size_t nOutMin, size_t nOutMax) const;
  void expectSize(const TensorRef& t, const char* arg, int64_t need, const char* shape) const;  // numel >= need
  void expectType(const TensorRef& t, const char* arg, DType want) const;
  [[noreturn]] void fail(const std::string& what, const char* file, int line) const;
  std::string context() const;  // "dense_forward on cpu:0 (B=128 I=784 O=500)"
};

// Kernel-level check: records file:line and prefixes the message with the op, the device and the attributes.
#define TL_KCHECK(call, cond, msg)                 \
  do {                                             \
    if (!(cond)) {                                 \
      std::ostringstream tl_k_os_;                 \
      tl_k_os_ << msg;                             \
      (call).fail(tl_k_os_.str(), __FILE__, __LINE__); \
    }                                              \
  } while (0)

using KernelFn = void (*)(KernelCall&);

// Kernels are registered by name per backend kind ("cpu", "cuda"); see Note [Kernel registry] in kernel.cc.
struct KernelTable {
  std::map<std::string, KernelFn> fns;
  KernelFn find(const std::string& name) const { auto it = fns.find(name); return it == fns.end() ? nullptr : it->second; }
};

}  // namespace tl
