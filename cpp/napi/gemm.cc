// GEMM settings bindings: which implementation runs the CPU's matrix products, and its thread count.
#include "../cpu/gemm.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

Napi::Value GemmInfo(const Napi::CallbackInfo& info) {
  return ObjectOf(info.Env()).set("impl", gemmImplName()).set("threads", gemmThreads());
}

Napi::Value SetGemmThreads(const Napi::CallbackInfo& info) {
  uint32_t n = u32Arg(info, 0, "thread count");
  if (n < 1 || n > 256) throw Napi::RangeError::New(info.Env(), "thread count must be in [1, 256]");
  setGemmThreads(static_cast<int>(n));
  return info.Env().Undefined();
}

}  // namespace

void registerGemmBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"gemmInfo", GemmInfo}, {"setGemmThreads", SetGemmThreads}});
}

}  // namespace napi
}  // namespace tl
