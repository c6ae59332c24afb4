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

// What the contract checks derived from a call when its program was compiled (the sizes a kernel reads, e.g.
// DenseArgs in kernel_args.h). Each kernel reads its own type through KernelCall::args<T>().
struct KernelArgs {
  virtual ~KernelArgs() = default;
};

// One kernel invocation. The buffers, attributes and parsed arguments are fixed when the program is compiled
// (Note [Kernel contracts] in kernel_contract.h), so a run builds nothing: the call only refers to them.
struct KernelCall {
  Backend& device;
  const std::string& op;  // kernel name, e.g. "dense_forward"
  const std::vector<TensorRef>& in;
  const std::vector<TensorRef>& out;
  const Attrs& attrs;
  const KernelArgs* parsed = nullptr;  // set by the contract check (kernel_contract.h)

  // The arguments the contract check parsed for this kernel; T is the kernel's own type (kernel_args.h).
  template <class T>
  const T& args() const {
    return static_cast<const T&>(*parsed);
  }
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

// Adds a kernel to a backend's table when the library loads (TL_KERNEL).
struct KernelRegistrar {
  KernelRegistrar(KernelTable& table, const char* name, KernelFn fn) { table.fns[name] = fn; }
};

// TL_KERNEL(tableFn, name) { body }: defines kernel `name` (its argument is `c`, a KernelCall&) and registers it in
// the table tableFn() returns, under its own name. Each backend wraps it (TL_CPU_KERNEL, TL_CUDA_KERNEL).
#define TL_KERNEL(tableFn, name)                                                     \
  static void name(::tl::KernelCall& c);                                             \
  static const ::tl::KernelRegistrar tl_kernel_registrar_##name(tableFn(), #name, name); \
  static void name(::tl::KernelCall& c)

}  // namespace tl
