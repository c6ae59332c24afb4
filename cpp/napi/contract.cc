// The contract binding: native().contract() = { hyper, kernels } (Note [Kernel contracts], Note [Hyper-parameter
// slots]); test/contract.test.ts and tools/kernel-docs.ts read it.
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
  for (size_t i = 0; i < args.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", args[i].name);
    o.Set("dtype", dtypeName(args[i].dtype));
    o.Set("shape", args[i].shape);
    arr.Set(i, o);
  }
  return arr;
}

Napi::Object kernelObject(Napi::Env env, const KernelContract& k) {
  auto o = Napi::Object::New(env);
  o.Set("name", k.name);
  o.Set("group", k.group);
  o.Set("inputs", argList(env, k.inputs));
  o.Set("outputs", argList(env, k.outputs));
  o.Set("optionalOutputs", static_cast<double>(k.optionalOutputs));
  auto attrs = Napi::Array::New(env, k.attrs.size());
  for (size_t j = 0; j < k.attrs.size(); ++j) {
    auto a = Napi::Object::New(env);
    a.Set("name", k.attrs[j].name);
    a.Set("kind", attrKindName(k.attrs[j].kind));
    if (k.attrs[j].note) a.Set("note", k.attrs[j].note);
    attrs.Set(j, a);
  }
  o.Set("attrs", attrs);
  o.Set("computes", k.computes);
  return o;
}

Napi::Value Contract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto hyper = Napi::Object::New(env);
    hyper.Set("lr", static_cast<double>(kHyperLr));
    hyper.Set("step", static_cast<double>(kHyperStep));
    hyper.Set("gradScale", static_cast<double>(kHyperGradScale));
    hyper.Set("used", static_cast<double>(kHyperUsed));
    hyper.Set("size", static_cast<double>(kHyperSize));
    const auto& table = kernelContracts();
    auto kernels = Napi::Array::New(env, table.size());
    for (size_t i = 0; i < table.size(); ++i) kernels.Set(i, kernelObject(env, table[i]));
    auto out = Napi::Object::New(env);
    out.Set("hyper", hyper);
    out.Set("kernels", kernels);
    return out;
  });
}

}  // namespace

void registerContractBindings(Napi::Env env, Napi::Object exports) { exportFn(env, exports, "contract", Contract); }

}  // namespace napi
}  // namespace tl
