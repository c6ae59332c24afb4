// The contract binding: native().contract() = { hyper, kernels } (Note [Kernel contracts], Note [Hyper-parameter
// slots]); test/contract.test.ts and tools/kernel-docs.ts read it. native().kernelIsa(): the CPU kernels' ISA path.
#include "../cpu/isa.h"
#include "../hyper.h"
#include "../kernel_contract.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

const char* attrKindName(AttrKind k) {
  switch (k) {
    case AttrKind::Dim: return "dim";
    case AttrKind::Number: return "number";
    case AttrKind::Flag: return "flag";
  }
  return "?";
}

Napi::Array argList(Napi::Env env, const std::vector<ArgSpec>& args) {
  auto arr = Napi::Array::New(env, args.size());
  for (size_t i = 0; i < args.size(); ++i)
    arr.Set(i, Napi::Value(ObjectOf(env).set("name", args[i].name).set("dtype", dtypeName(args[i].dtype)).set("shape", args[i].shape)));
  return arr;
}

Napi::Value kernelObject(Napi::Env env, const KernelContract& k) {
  auto attrs = Napi::Array::New(env, k.attrs.size());
  for (size_t j = 0; j < k.attrs.size(); ++j) {
    ObjectOf a(env);
    a.set("name", k.attrs[j].name).set("kind", attrKindName(k.attrs[j].kind));
    if (k.attrs[j].note) a.set("note", k.attrs[j].note);
    attrs.Set(j, Napi::Value(a));
  }
  return ObjectOf(env).set("name", k.name).set("group", k.group).set("inputs", argList(env, k.inputs))
      .set("outputs", argList(env, k.outputs)).set("optionalOutputs", static_cast<double>(k.optionalOutputs))
      .set("attrs", attrs).set("computes", k.computes);
}

Napi::Value Contract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Value hyper = ObjectOf(env).set("lr", double(kHyperLr)).set("step", double(kHyperStep))
        .set("gradScale", double(kHyperGradScale)).set("used", double(kHyperUsed)).set("size", double(kHyperSize));
    const auto& table = kernelContracts();
    auto kernels = Napi::Array::New(env, table.size());
    for (size_t i = 0; i < table.size(); ++i) kernels.Set(i, kernelObject(env, table[i]));
    return ObjectOf(env).set("hyper", hyper).set("kernels", kernels);
  });
}

// { isa, available }: the CPU kernels' path in this process and the paths this CPU has (Note [Kernel ISA]); throws
// when TOWERLINE_ISA asks for a path that is unknown or missing here.
Napi::Value KernelIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const cpuk::Isa isa = cpuk::kernelIsa();
    const auto have = cpuk::availableIsas();
    auto available = Napi::Array::New(env, have.size());
    for (size_t i = 0; i < have.size(); ++i) available.Set(i, Napi::String::New(env, cpuk::isaName(have[i])));
    return ObjectOf(env).set("isa", cpuk::isaName(isa)).set("available", available);
  });
}

}  // namespace

void registerContractBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"contract", Contract}, {"kernelIsa", KernelIsa}});
}

}  // namespace napi
}  // namespace tl
