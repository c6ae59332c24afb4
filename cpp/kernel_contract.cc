// The generic half of the kernel contract checks (Note [Kernel contracts]): arity, attributes, dtypes and sizes.
#include "kernel_contract.h"

#include <cctype>
#include <cstring>
#include <map>

#include "backend.h"
#include "hyper.h"
#include "kernel_args.h"

namespace tl {

namespace {

// The factors of a shape: attribute names or integer literals ("(B,3)" -> B, 3).
std::vector<std::string> shapeFactors(const char* shape) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = shape; *p; ++p) {
    if (*p == '(' || *p == ' ') continue;
    if (*p == ',' || *p == ')') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      continue;
    }
    cur += *p;
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

bool isHyper(const char* shape) { return std::strcmp(shape, "hyper") == 0; }
bool isLiteral(const std::string& f) { return !f.empty() && std::isdigit(static_cast<unsigned char>(f[0])); }

// Startup check of the table itself: names unique, shapes over declared integer attributes.
void checkTable(const std::vector<KernelContract>& table) {
  std::map<std::string, int> seen;
  for (const KernelContract& k : table) {
    TL_CHECK(seen[k.name]++ == 0, "kernel contract table: '" << k.name << "' is declared twice");
    TL_CHECK(k.optionalOutputs <= k.outputs.size(), "kernel contract '" << k.name << "': more optional outputs than outputs");
    TL_CHECK(k.parse != nullptr, "kernel contract '" << k.name << "' has no parse function");
    for (const auto* list : {&k.inputs, &k.outputs})
      for (const ArgSpec& a : *list) {
        if (isHyper(a.shape)) continue;
        for (const std::string& f : shapeFactors(a.shape)) {
          if (isLiteral(f)) continue;
          bool declared = false;
          for (const AttrSpec& s : k.attrs) declared |= f == s.name && s.kind == AttrKind::Dim;
          TL_CHECK(declared, "kernel contract '" << k.name << "': shape " << a.shape << " of " << a.name << " uses '" << f
                                                 << "', which is not an integer attribute of the kernel");
        }
      }
  }
}

void expectType(const KernelCall& c, const TensorRef& t, const char* arg, DType want) {
  TL_KCHECK(c, t.dtype == want,
            arg << " (buffer #" << t.handle << ") must be " << dtypeName(want) << ", but is " << dtypeName(t.dtype));
}

void expectSize(const KernelCall& c, const TensorRef& t, const char* arg, int64_t need, const std::string& shape) {
  TL_KCHECK(c, t.numel >= need,
            arg << " (buffer #" << t.handle << ") must hold " << shape << " = " << need << " elements, but holds "
                << t.numel << "; allocate it with at least " << need << " elements or fix the attributes");
}

void expectArg(const KernelCall& c, const TensorRef& t, const ArgSpec& a) {
  expectType(c, t, a.name, a.dtype);
  if (isHyper(a.shape))
    expectSize(c, t, a.name, kHyperUsed, "the hyper slots (lr, step, gradScale)");
  else
    expectSize(c, t, a.name, shapeNumel(c, a.shape), a.shape);
}

void expectAttr(const KernelCall& c, const AttrSpec& s) {
  switch (s.kind) {
    case AttrKind::Dim: kargs::dim(c, s.name); break;
    case AttrKind::Number: kargs::attr(c, s.name); break;
    case AttrKind::Flag: kargs::flagAttr(c, s.name); break;
  }
}

}  // namespace

const KernelContract* findContract(const std::string& name) {
  static const std::map<std::string, const KernelContract*> byName = [] {
    std::map<std::string, const KernelContract*> m;
    for (const KernelContract& k : kernelContracts()) m[k.name] = &k;
    return m;
  }();
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : it->second;
}

int64_t shapeNumel(const KernelCall& c, const char* shape) {
  if (isHyper(shape)) return kHyperUsed;
  int64_t n = 1;
  for (const std::string& f : shapeFactors(shape))
    n = kargs::mul(c, n, isLiteral(f) ? std::stoll(f) : kargs::dim(c, f.c_str()));
  return n;
}

std::unique_ptr<KernelArgs> checkKernelCall(const KernelContract& k, const KernelCall& c) {
  const size_t nOutMax = k.outputs.size(), nOutMin = nOutMax - k.optionalOutputs;
  TL_KCHECK(c, c.in.size() == k.inputs.size(), "expected " << k.inputs.size() << " input buffers, got " << c.in.size());
  TL_KCHECK(c, c.out.size() >= nOutMin && c.out.size() <= nOutMax,
            "expected " << nOutMin << (nOutMax != nOutMin ? "-" + std::to_string(nOutMax) : std::string())
                        << " output buffers, got " << c.out.size());
  for (const AttrSpec& s : k.attrs) expectAttr(c, s);
  std::unique_ptr<KernelArgs> parsed = k.parse(c);  // constraints between attributes come before buffer sizes
  for (size_t i = 0; i < c.in.size(); ++i) expectArg(c, c.in[i], k.inputs[i]);
  for (size_t i = 0; i < c.out.size(); ++i) expectArg(c, c.out[i], k.outputs[i]);
  return parsed;
}

std::unique_ptr<KernelArgs> checkKernelCall(const KernelCall& c) {
  const KernelContract* k = findContract(c.op);
  TL_KCHECK(c, k != nullptr, "no contract declares this kernel (cpp/kernel_contracts.cc); every kernel needs one");
  return checkKernelCall(*k, c);
}

const std::vector<KernelContract>& kernelContracts() {
  static const std::vector<KernelContract>& table = [] () -> const std::vector<KernelContract>& {
    const std::vector<KernelContract>& t = kernelContractTable();
    checkTable(t);
    return t;
  }();
  return table;
}

}  // namespace tl
