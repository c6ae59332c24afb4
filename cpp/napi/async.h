// Async plumbing of the N-API bindings: per-environment state, and promises settled on the JS thread when work
// queued on a device thread finishes.
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace tl {

class Device;

namespace napi {

// Sets up this environment's state (its id and its thread-safe function) and the cleanup hook that releases what
// the environment still owns (Note [Addon state per environment]).
void initEnv(Napi::Env env);
// The environment's id, recorded as the owner of devices, buffers, programs and communicators it creates.
uint64_t envId(Napi::Env env);

// Note [Reply maker]: runWith settles once per training step, and building its reply object natively (a fresh
// object, its property names internalised per call, then defined one by one, and an ArrayBuffer for each typed array)
// was a sixth of the JS thread's CPU samples per step in a perf profile of the MNIST bench loop (issue 16). So
// src/native/addon.ts registers, per environment, a JS function and a scratch Float64Array: the reply lambda writes
// the numbers into the scratch and calls the function, which copies them out into small arrays (on V8's heap) and
// returns an object literal of the one shape runWith always had (RunResult). The scratch is read back before the call
// returns, so replies of pipelined steps never share memory. Without a registered maker (or a reply longer than the
// scratch) the reply is built natively as before.
struct ReplyMaker {
  Napi::Function make;  // make(nValues, nMarks, startMs, waitMs, guardTripped, cancelled) -> RunResult
  double* scratch = nullptr;
  size_t capacity = 0;  // doubles
};
void setReplyMaker(Napi::Env env, Napi::Function make, Napi::Float64Array scratch);
// The environment's maker, or nullptr when none is registered.
const ReplyMaker* replyMaker(Napi::Env env);

// Queues `task` on the device and returns a promise settled on this environment's JS thread: rejected with the
// task's error, or resolved with `result(env)` (undefined when empty), built on the JS thread.
Napi::Value submitAsync(Napi::Env env, const std::shared_ptr<Device>& dev, std::function<void()> task,
                        std::function<Napi::Value(Napi::Env)> result = nullptr);

// The same on any queue that runs its tasks in order and calls `done` after each (a device, or a parameter-server
// link's thread: cpp/ps/task_thread.h). `submit` may throw; the promise then rejects with that error.
using SubmitFn = std::function<void(std::function<void()> task, std::function<void(std::exception_ptr)> done)>;
Napi::Value submitAsync(Napi::Env env, const SubmitFn& submit, std::function<void()> task,
                        std::function<Napi::Value(Napi::Env)> result = nullptr);

}  // namespace napi
}  // namespace tl
