// Thread placement bindings (Note [Thread placement] in src/tower-port/thread-placement.ts): the calling thread's CPUs,
// pinning it (the coordinator's thread, for the length of a run), and a device's threads' CPUs as they are.
#include "../affinity.h"
#include "../registry.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

// A JS array of CPU ids; throws a TypeError naming `what` otherwise.
std::vector<int> cpusArg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + ": expected an array of CPU ids (integers >= 0)");
  auto a = v.As<Napi::Array>();
  std::vector<int> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    const double c = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(c >= 0 && c < 1024) || c != static_cast<double>(static_cast<int>(c)))
      throw Napi::RangeError::New(env, what + "[" + std::to_string(i) + "]: expected a CPU id, an integer in [0, 1024)");
    out.push_back(static_cast<int>(c));
  }
  return out;
}

namespace {

Napi::Array toArray(Napi::Env env, const std::vector<int>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

// threadCpus(): the calling thread's CPUs (empty where the platform has no affinity).
Napi::Value ThreadCpus(const Napi::CallbackInfo& info) { return toArray(info.Env(), threadCpus()); }

// pinThread(cpus): restricts the calling thread to `cpus`.
Napi::Value PinThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto cpus = cpusArg(env, info.Length() > 0 ? info[0] : env.Undefined(), "pinThread(cpus)");
  guarded(env, [&] { pinThread(cpus); });
  return env.Undefined();
}

// deviceThreadCpus(device): [device thread's CPUs, GEMM worker 1's, ...] as they are now.
Napi::Value DeviceThreadCpus(const Napi::CallbackInfo& info) {
  return withHandle(info, "device id", [&](uint32_t id) -> Napi::Value {
    auto dev = Registry::get().device(id);
    std::vector<std::vector<int>> masks;
    dev->runBlocking([&] { masks = dev->backend().threadCpus(); });
    auto a = Napi::Array::New(info.Env(), masks.size());
    for (size_t i = 0; i < masks.size(); ++i) a.Set(static_cast<uint32_t>(i), toArray(info.Env(), masks[i]));
    return a;
  });
}

}  // namespace

void registerAffinityBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("affinitySupported", Napi::Boolean::New(env, affinitySupported()));
  exports.Set("machineThreads", Napi::Number::New(env, machineThreads()));
  exportAll(env, exports, {{"threadCpus", ThreadCpus}, {"pinThread", PinThread}, {"deviceThreadCpus", DeviceThreadCpus}});
}

}  // namespace napi
}  // namespace tl
