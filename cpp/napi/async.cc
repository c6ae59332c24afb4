// Per-environment state and promise settlement (async.h).
#include "async.h"

#include <atomic>

#include "../registry.h"
#include "args.h"

namespace tl {
namespace napi {

namespace {

// Work finished on a device thread, waiting to settle its promise on the JS thread.
struct Completion {
  Napi::Promise::Deferred deferred;
  std::exception_ptr error;
  // Builds the resolved value on the JS thread (undefined when empty).
  std::function<Napi::Value(Napi::Env)> result;
};

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Completion* c);
using CompletionTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Completion, settle>;

// Note [Addon state per environment]: each Node environment (main thread or worker_thread) gets its own
// EnvState: an id for registry ownership and the thread-safe function that settles its promises. The cleanup
// hook releases the environment's devices (joining their threads) before the thread-safe function goes away.
struct EnvState {
  uint64_t id;
  CompletionTsfn tsfn;
  int pending = 0;  // JS thread only; keeps the event loop alive while device work is outstanding
  // Note [Reply maker] (async.h): held strongly for the environment's life.
  Napi::FunctionReference make;
  Napi::Reference<Napi::Float64Array> scratchRef;
  ReplyMaker maker;
};

std::atomic<uint64_t> nextEnvId{1};

EnvState& state(Napi::Env env) { return *env.GetInstanceData<EnvState>(); }

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Completion* c) {
  std::unique_ptr<Completion> own(c);
  if (env == nullptr) return;  // environment is going away: nobody is waiting any more
  auto* st = env.GetInstanceData<EnvState>();
  if (st && --st->pending == 0) st->tsfn.Unref(env);
  if (!c->error) {
    try {
      c->deferred.Resolve(c->result ? c->result(env) : env.Undefined());
      return;
    } catch (...) {  // building the reply failed (e.g. a JS exception in the reply maker): reject with that
      c->error = std::current_exception();
    }
  }
  c->deferred.Reject(toJsError(env, c->error).Value());
}

void cleanupEnv(EnvState* st) {
  Registry::get().releaseEnv(st->id);  // joins this environment's device threads
  st->tsfn.Release();
}

}  // namespace

void initEnv(Napi::Env env) {
  auto* st = new EnvState{nextEnvId++, CompletionTsfn(), 0, {}, {}, {}};
  st->tsfn = CompletionTsfn::New(env, "towerline-completions", 0, 1, nullptr);
  st->tsfn.Unref(env);
  env.SetInstanceData<EnvState>(st);  // deleted by node-addon-api when the environment is torn down
  env.AddCleanupHook([st] { cleanupEnv(st); });
}

uint64_t envId(Napi::Env env) { return state(env).id; }

void setReplyMaker(Napi::Env env, Napi::Function make, Napi::Float64Array scratch) {
  auto& st = state(env);
  st.make = Napi::Persistent(make);
  st.scratchRef = Napi::Persistent(scratch);
  st.maker = ReplyMaker{make, scratch.Data(), scratch.ElementLength()};
}

const ReplyMaker* replyMaker(Napi::Env env) {
  auto& st = state(env);
  if (st.make.IsEmpty()) return nullptr;
  st.maker.make = st.make.Value();  // a handle valid in the caller's scope
  return &st.maker;
}

Napi::Value submitAsync(Napi::Env env, const std::shared_ptr<Device>& dev, std::function<void()> task,
                        std::function<Napi::Value(Napi::Env)> result) {
  // The completion (it wakes this JS thread) stays off the device thread's critical path: a CPU device's spinning GEMM
  // worker does it (Note [Hand-off to a spinning worker] in cpu/gemm_threads.cc), or the device thread does it when it
  // would wait anyway (Note [Wake-ups in idle time] in idle_work.h).
  return submitAsync(env, [dev](std::function<void()> t, std::function<void(std::exception_ptr)> d) {
    Device* raw = dev.get();
    dev->submit(std::move(t), [raw, d = std::move(d)](std::exception_ptr e) { raw->settle([d, e] { d(e); }); });
  }, std::move(task), std::move(result));
}

Napi::Value submitAsync(Napi::Env env, const SubmitFn& submit, std::function<void()> task,
                        std::function<Napi::Value(Napi::Env)> result) {
  auto& st = state(env);
  auto* c = new Completion{Napi::Promise::Deferred::New(env), nullptr, std::move(result)};
  Napi::Promise promise = c->deferred.Promise();
  if (st.pending++ == 0) st.tsfn.Ref(env);
  CompletionTsfn tsfn = st.tsfn;
  try {
    submit(std::move(task), [c, tsfn](std::exception_ptr e) mutable {
      c->error = e;
      if (tsfn.NonBlockingCall(c) != napi_ok) delete c;  // environment closing
    });
  } catch (...) {
    if (--st.pending == 0) st.tsfn.Unref(env);
    c->deferred.Reject(toJsError(env, std::current_exception()).Value());
    Napi::Promise p = c->deferred.Promise();
    delete c;
    return p;
  }
  return promise;
}

}  // namespace napi
}  // namespace tl
