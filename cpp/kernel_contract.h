// The kernel contract: one declaration per kernel (buffers with dtype and shape, attributes, what it computes),
// checked once when a program is compiled, exported to JS (native().contract()) and rendered as docs/kernels.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernel.h"

namespace tl {

// Note [Kernel contracts]: every kernel of every backend has one entry in the table (kernel_contracts.cc): its
// inputs and outputs in order, each with a dtype and a shape written over the attributes ("(B,I)": B·I
// elements, "(1)", "hyper": the hyper block of Note [Hyper-parameter slots]), its attributes, and one line on
// what it computes. Everything the entry says is fixed when a program is compiled (buffers never change size or
// dtype, attributes are constants), so the op compiler checks it then, once: the arity, the attributes, the
// kernel's own constraints between attributes (its parse function in kernel_args.cc, which also derives the sizes
// the kernel reads), then every buffer's dtype and size, throwing through TL_KCHECK so the message names the op,
// the device, the attributes, the argument and the sizes. At run time a kernel reads its parsed sizes
// (KernelCall::args<T>()) and checks only what depends on values: label and index ranges, crop parameters, the
// step in hyper. The same table is native().contract().kernels (test/contract.test.ts checks the float64
// reference's signatures and the registered kernels against it) and docs/kernels.md (npm run docs:kernels).

enum class AttrKind : uint8_t {
  Dim,     // a non-negative integer (a size, a window, a seed)
  Number,  // any number
  Flag,    // 0 or 1, default 0
};

struct AttrSpec {
  const char* name;
  AttrKind kind;
  const char* note;  // for the docs, e.g. "in (0, 1]"; nullptr for none
};

struct ArgSpec {
  const char* name;
  DType dtype;
  const char* shape;  // "(B,I)", "(1)", "(B,3)": the product of attributes and integers; or "hyper"
};

using ParseFn = std::unique_ptr<KernelArgs> (*)(const KernelCall&);

struct KernelContract {
  const char* name;
  const char* group;  // the docs section
  std::vector<ArgSpec> inputs, outputs;
  size_t optionalOutputs;  // trailing outputs that may be left out
  std::vector<AttrSpec> attrs;
  const char* computes;  // one line
  ParseFn parse;         // the constraints between attributes, and the sizes the kernel reads (kernel_args.cc)
};

// The table, in docs order; checked for consistency (every shape names declared attributes) on first use.
const std::vector<KernelContract>& kernelContracts();
// The declarations themselves (kernel_contracts.cc); use kernelContracts(), which checks them.
const std::vector<KernelContract>& kernelContractTable();
// nullptr when no kernel has that name.
const KernelContract* findContract(const std::string& name);

// Runs every check of the contract on a call whose buffers and attributes are known (compile time); returns what
// the kernel reads at run time. Throws tl::Error through TL_KCHECK.
std::unique_ptr<KernelArgs> checkKernelCall(const KernelContract& k, const KernelCall& c);
// The same, finding the contract by the call's op name (throws when there is none).
std::unique_ptr<KernelArgs> checkKernelCall(const KernelCall& c);

// The element count `shape` stands for under the call's attributes (attributes already checked as integers).
int64_t shapeNumel(const KernelCall& c, const char* shape);

}  // namespace tl
