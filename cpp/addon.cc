// The towerline N-API addon: registers the backends once, sets up each environment, and adds the exports of each
// concern (cpp/napi/*.cc). Handles are process-wide (Note [Process-wide registry] in registry.h).
#include <napi.h>

#include <mutex>

#include "affinity.h"
#include "backend.h"
#include "napi/async.h"
#include "napi/bindings.h"
#include "startup.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, [] {
    tl::machineThreads();  // counted before placement pins any thread (cpp/affinity.h)
    tl::registerCpuBackend();
    tl::runStartupHooks();  // optional backends (Note [Backend start-up hooks])
  });
  tl::napi::initEnv(env);
  tl::napi::registerDeviceBindings(env, exports);
  tl::napi::registerProgramBindings(env, exports);
  tl::napi::registerCommBindings(env, exports);
  tl::napi::registerGemmBindings(env, exports);
  tl::napi::registerAffinityBindings(env, exports);
  tl::napi::registerContractBindings(env, exports);
  tl::napi::registerGpuBindings(env, exports);
  tl::napi::registerGroupBindings(env, exports);
  tl::napi::registerPsBindings(env, exports);
  tl::napi::registerPsLinkBindings(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(towerline, Init)
