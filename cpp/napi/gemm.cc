// GEMM bindings: which implementation runs the CPU's matrix products, and each device's GEMM threads (Note [GEMM
// threads] in cpu/gemm.cc: a property of a device, never of the process).
#include "../cpu/gemm.h"
#include "../registry.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

Napi::Value GemmInfo(const Napi::CallbackInfo& info) {
  return ObjectOf(info.Env()).set("impl", gemmImplName()).set("kernel", gemmKernelName());
}

// setDeviceGemmThreads(device, n): from the device's next kernel on (it runs on the device thread, after queued work).
Napi::Value SetDeviceGemmThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t id = u32Arg(info, 0, "device id");
  double n = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 1 && n <= kMaxGemmThreads) || n != static_cast<double>(static_cast<int>(n)))
    throw Napi::RangeError::New(env, "setDeviceGemmThreads: the thread count must be an integer in [1, " +
                                         std::to_string(kMaxGemmThreads) + "]");
  guarded(env, [&] {
    auto dev = Registry::get().device(id);
    dev->runBlocking([&] { dev->backend().setGemmThreads(static_cast<int>(n)); });
  });
  return env.Undefined();
}

Napi::Value DeviceGemmThreads(const Napi::CallbackInfo& info) {
  return withHandle(info, "device id", [&](uint32_t id) -> Napi::Value {
    auto dev = Registry::get().device(id);
    int n = 1;
    dev->runBlocking([&] { n = dev->backend().gemmThreads(); });
    return Napi::Number::New(info.Env(), n);
  });
}

}  // namespace

void registerGemmBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"gemmInfo", GemmInfo}, {"setDeviceGemmThreads", SetDeviceGemmThreads},
                           {"deviceGemmThreads", DeviceGemmThreads}});
}

}  // namespace napi
}  // namespace tl
