// The N-API surface of towerline: devices, buffers by handle, compiled programs run on each device's own thread.
#include <napi.h>

#include <atomic>
#include <cstring>

#include "cpu/gemm.h"
#include "collective/communicator.h"
#include "registry.h"
#include "cuda/gpu_api.h"  // plain C++; defined only in builds with the CUDA backend

namespace tl {
void registerCpuBackend();
void registerOptionalBackends();  // backends.cc: CUDA where built
}  // namespace tl

namespace {

using tl::Registry;

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
};

std::atomic<uint64_t> nextEnvId{1};

Napi::Error toJsError(Napi::Env env, const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const tl::Error& e) {
    auto err = Napi::Error::New(env, e.what());
    err.Set("nativeLocation", Napi::String::New(env, e.where));
    err.Set("code", Napi::String::New(env, "TL_NATIVE"));
    return err;
  } catch (const std::exception& e) {
    auto err = Napi::Error::New(env, std::string("native error: ") + e.what());
    err.Set("code", Napi::String::New(env, "TL_NATIVE"));
    return err;
  } catch (...) {
    return Napi::Error::New(env, "native error of unknown type");
  }
}

// Runs `body`, converting tl::Error into a thrown JS Error that keeps the native file:line.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw toJsError(env, std::current_exception());
  }
}

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Completion* c) {
  std::unique_ptr<Completion> own(c);
  if (env == nullptr) return;  // environment is going away: nobody is waiting any more
  auto* st = env.GetInstanceData<EnvState>();
  if (st && --st->pending == 0) st->tsfn.Unref(env);
  if (c->error)
    c->deferred.Reject(toJsError(env, c->error).Value());
  else
    c->deferred.Resolve(c->result ? c->result(env) : env.Undefined());
}

EnvState& state(Napi::Env env) { return *env.GetInstanceData<EnvState>(); }

uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string("expected ") + what + " (a number) as argument " + std::to_string(i + 1));
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint32_t>(v)))
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a non-negative integer handle, got " + std::to_string(v));
  return static_cast<uint32_t>(v);
}

// Queues `task` on the device and returns a promise settled on this environment's JS thread.
Napi::Value submitAsync(Napi::Env env, const std::shared_ptr<tl::Device>& dev, std::function<void()> task,
                        std::function<Napi::Value(Napi::Env)> result = nullptr) {
  auto& st = state(env);
  auto* c = new Completion{Napi::Promise::Deferred::New(env), nullptr, std::move(result)};
  Napi::Promise promise = c->deferred.Promise();
  if (st.pending++ == 0) st.tsfn.Ref(env);
  CompletionTsfn tsfn = st.tsfn;
  try {
    dev->submit(std::move(task), [c, tsfn](std::exception_ptr e) mutable {
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

tl::DType dtypeArg(Napi::Env env, const Napi::Value& v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return tl::DType::F32;
  if (s == "i32") return tl::DType::I32;
  if (s == "u8") return tl::DType::U8;
  throw Napi::TypeError::New(env, "dtype must be 'f32', 'i32' or 'u8', got " + (v.IsString() ? "'" + s + "'" : std::string("a non-string")));
}

napi_typedarray_type arrayTypeFor(tl::DType t) {
  switch (t) {
    case tl::DType::F32: return napi_float32_array;
    case tl::DType::I32: return napi_int32_array;
    default: return napi_uint8_array;
  }
}

// ---- exported functions ---------------------------------------------------------------------------------------

Napi::Value BackendKinds(const Napi::CallbackInfo& info) {
  auto kinds = Registry::get().backendKinds();
  auto arr = Napi::Array::New(info.Env(), kinds.size());
  for (size_t i = 0; i < kinds.size(); ++i) arr.Set(i, kinds[i]);
  return arr;
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "deviceCount(kind: string)");
  return Napi::Number::New(info.Env(), Registry::get().deviceCount(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Value OpenDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "openDevice(kind: string, index: number)");
  return guarded(env, [&]() -> Napi::Value {
    auto dev = Registry::get().openDevice(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                                          state(env).id);
    auto o = Napi::Object::New(env);
    o.Set("id", dev->id());
    o.Set("name", dev->name());
    o.Set("kind", dev->backend().kind());
    return o;
  });
}

Napi::Value CloseDevice(const Napi::CallbackInfo& info) {
  uint32_t id = u32Arg(info, 0, "device id");
  guarded(info.Env(), [&] { Registry::get().closeDevice(id); });
  return info.Env().Undefined();
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dev = u32Arg(info, 0, "device id");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "alloc(device, numel, dtype)");
  double n = info[1].As<Napi::Number>().DoubleValue();
  if (!(n >= 1) || n != static_cast<double>(static_cast<int64_t>(n)))
    throw Napi::RangeError::New(env, "alloc: element count must be a positive integer, got " + std::to_string(n));
  tl::DType dt = info.Length() > 2 ? dtypeArg(env, info[2]) : tl::DType::F32;
  return guarded(env, [&]() -> Napi::Value {
    auto buf = Registry::get().alloc(dev, static_cast<int64_t>(n), dt, state(env).id);
    return Napi::Number::New(env, buf->handle);
  });
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  uint32_t h = u32Arg(info, 0, "buffer handle");
  guarded(info.Env(), [&] { Registry::get().freeBuffer(h); });
  return info.Env().Undefined();
}

Napi::Value BufferInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "buffer handle");
  return guarded(env, [&]() -> Napi::Value {
    auto b = Registry::get().buffer(h);
    auto o = Napi::Object::New(env);
    o.Set("numel", Napi::Number::New(env, static_cast<double>(b->numel)));
    o.Set("dtype", tl::dtypeName(b->dtype));
    o.Set("device", b->device->id());
    return o;
  });
}

// write(handle, typedArray, offsetElements): ordered after the device's queued work; blocks until copied.
Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "buffer handle");
  if (info.Length() < 2 || !info[1].IsTypedArray()) throw Napi::TypeError::New(env, "write(handle, typedArray, offset?)");
  auto arr = info[1].As<Napi::TypedArray>();
  double off = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  guarded(env, [&] {
    auto b = Registry::get().buffer(h);
    TL_CHECK(arr.TypedArrayType() == arrayTypeFor(b->dtype),
             "write to buffer #" << h << " on " << b->device->name() << ": buffer is " << tl::dtypeName(b->dtype)
                                 << ", so pass a " << (b->dtype == tl::DType::F32 ? "Float32Array" : b->dtype == tl::DType::I32 ? "Int32Array" : "Uint8Array"));
    int64_t n = static_cast<int64_t>(arr.ElementLength());
    TL_CHECK(off >= 0 && off == static_cast<double>(static_cast<int64_t>(off)) && static_cast<int64_t>(off) + n <= b->numel,
             "write to buffer #" << h << " on " << b->device->name() << ": " << n << " elements at offset " << off
                                 << " do not fit in " << b->numel << " elements");
    // napi_get_typedarray_info gives the data pointer for SharedArrayBuffer-backed arrays too.
    void* raw = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_typedarray_info(env, arr, nullptr, nullptr, &raw, nullptr, nullptr));
    const uint8_t* src = static_cast<const uint8_t*>(raw);
    size_t esz = tl::dtypeSize(b->dtype);
    uint8_t* dst = static_cast<uint8_t*>(b->data) + static_cast<size_t>(off) * esz;
    size_t bytes = static_cast<size_t>(n) * esz;
    if (bytes == 0) return;
    auto dev = b->device;
    dev->runBlocking([&] { dev->backend().copyIn(dst, src, bytes); });
  });
  return env.Undefined();
}

// read(handle, offset?, count?): a fresh typed array with the buffer's contents, after queued work.
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "buffer handle");
  return guarded(env, [&]() -> Napi::Value {
    auto b = Registry::get().buffer(h);
    int64_t off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    int64_t n = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : b->numel - off;
    TL_CHECK(off >= 0 && n >= 0 && off + n <= b->numel,
             "read of buffer #" << h << ": range [" << off << ", " << off + n << ") is outside its " << b->numel << " elements");
    size_t esz = tl::dtypeSize(b->dtype);
    auto ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(n) * esz);
    uint8_t* dst = static_cast<uint8_t*>(ab.Data());
    const uint8_t* src = static_cast<const uint8_t*>(b->data) + static_cast<size_t>(off) * esz;
    auto dev = b->device;
    if (n > 0) dev->runBlocking([&] { dev->backend().copyOut(dst, src, static_cast<size_t>(n) * esz); });
    napi_value out;
    NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, arrayTypeFor(b->dtype), static_cast<size_t>(n), ab, 0, &out),
                         Napi::Value());
    return Napi::Value(env, out);
  });
}

std::vector<std::shared_ptr<tl::Buffer>> handles(Napi::Env env, const Napi::Object& op, const char* key, size_t opIndex,
                                                 const std::shared_ptr<tl::Device>& dev, const std::string& kernel) {
  std::vector<std::shared_ptr<tl::Buffer>> out;
  Napi::Value v = op.Get(key);
  if (!v.IsArray())
    throw Napi::TypeError::New(env, "op #" + std::to_string(opIndex) + " (" + kernel + "): '" + key + "' must be an array of buffer handles");
  auto arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value hv = arr.Get(i);
    if (!hv.IsNumber())
      throw Napi::TypeError::New(env, "op #" + std::to_string(opIndex) + " (" + kernel + "): " + key + "[" + std::to_string(i) + "] is not a handle");
    auto b = Registry::get().buffer(hv.As<Napi::Number>().Uint32Value());
    TL_CHECK(b->device == dev, "op #" << opIndex << " (" << kernel << ") on " << dev->name() << ": " << key << "[" << i
                                      << "] is buffer #" << b->handle << " of " << b->device->name()
                                      << "; a kernel only reads and writes its own device's memory (move data with a collective)");
    out.push_back(b);
  }
  return out;
}

// compile(device, ops): resolves kernels by name on the device's backend and pins the buffers.
Napi::Value Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t devId = u32Arg(info, 0, "device id");
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "compile(device, ops: Op[])");
  auto ops = info[1].As<Napi::Array>();
  return guarded(env, [&]() -> Napi::Value {
    auto dev = Registry::get().device(devId);
    auto prog = std::make_shared<tl::Program>();
    prog->device = dev;
    prog->ownerEnv = state(env).id;
    const auto& table = dev->backend().kernels();
    for (uint32_t i = 0; i < ops.Length(); ++i) {
      Napi::Value ov = ops.Get(i);
      if (!ov.IsObject()) throw Napi::TypeError::New(env, "op #" + std::to_string(i) + " is not an object");
      auto o = ov.As<Napi::Object>();
      Napi::Value kv = o.Get("kernel");
      if (!kv.IsString()) throw Napi::TypeError::New(env, "op #" + std::to_string(i) + ": 'kernel' must be a string");
      tl::CompiledOp op;
      op.kernel = kv.As<Napi::String>().Utf8Value();
      Napi::Value av0 = o.Get("attrs");
      auto attrNum = [&](const char* k) -> double {
        Napi::Value v = av0.IsObject() ? av0.As<Napi::Object>().Get(k) : env.Undefined();
        if (!v.IsNumber()) throw Napi::TypeError::New(env, "op #" + std::to_string(i) + " (" + op.kernel + "): attribute '" + k + "' must be a number");
        return v.As<Napi::Number>().DoubleValue();
      };
      if (op.kernel == "@collective") {
        op.comm = Registry::get().comm(static_cast<uint32_t>(attrNum("comm")));
        op.rank = static_cast<int>(attrNum("rank"));
        TL_CHECK(op.rank >= 0 && op.rank < op.comm->size(), "op #" << i << " (@collective): rank " << op.rank << " outside [0, " << op.comm->size() << ")");
        prog->ops.push_back(std::move(op));
        continue;
      }
      if (op.kernel == "@sleep") {
        op.sleepMs = attrNum("ms");
        prog->ops.push_back(std::move(op));
        continue;
      }
      if (op.kernel == "@poison" || op.kernel == "@guard") {
        bool poison = op.kernel == "@poison";
        auto bufs = handles(env, o, poison ? "outputs" : "inputs", i, dev, op.kernel);
        TL_CHECK(bufs.size() == 1 && bufs[0]->dtype == tl::DType::F32, "op #" << i << " (" << op.kernel << ") takes one f32 buffer");
        if (poison) {
          op.poisonAt = static_cast<int64_t>(attrNum("index"));
          TL_CHECK(op.poisonAt < bufs[0]->numel, "op #" << i << " (@poison): index " << op.poisonAt << " outside the buffer");
          op.out = bufs;
        } else {
          op.guard = true;
          op.in = bufs;
        }
        prog->ops.push_back(std::move(op));
        continue;
      }
      if (op.kernel == "@mark") {
        op.mark = static_cast<int>(prog->marks.size());
        prog->marks.push_back(0);
        prog->ops.push_back(std::move(op));
        continue;
      }
      op.fn = table.find(op.kernel);
      TL_CHECK(op.fn != nullptr, "op #" << i << ": no kernel named '" << op.kernel << "' on " << dev->name()
                                        << "; see docs/kernels.md for the kernels every backend has");
      op.in = handles(env, o, "inputs", i, dev, op.kernel);
      op.out = handles(env, o, "outputs", i, dev, op.kernel);
      Napi::Value av = o.Get("attrs");
      if (av.IsObject()) {
        auto attrs = av.As<Napi::Object>();
        auto names = attrs.GetPropertyNames();
        for (uint32_t k = 0; k < names.Length(); ++k) {
          std::string name = names.Get(k).As<Napi::String>().Utf8Value();
          Napi::Value val = attrs.Get(name);
          if (!val.IsNumber())
            throw Napi::TypeError::New(env, "op #" + std::to_string(i) + " (" + op.kernel + "): attribute '" + name + "' must be a number");
          op.attrs.values[name] = val.As<Napi::Number>().DoubleValue();
        }
      } else if (!av.IsUndefined()) {
        throw Napi::TypeError::New(env, "op #" + std::to_string(i) + " (" + op.kernel + "): 'attrs' must be an object of numbers");
      }
      prog->ops.push_back(std::move(op));
    }
    return Napi::Number::New(env, Registry::get().addProgram(prog)->handle);
  });
}

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "program handle");
  return guarded(env, [&]() -> Napi::Value {
    auto prog = Registry::get().program(h);
    return submitAsync(env, prog->device, [prog] { prog->execute(); });
  });
}

// programStatus(program): {startMs, marks, guardTripped, currentOp}; safe while the program runs (the watchdog).
Napi::Value ProgramStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "program handle");
  return guarded(env, [&]() -> Napi::Value {
    auto prog = Registry::get().program(h);
    auto o = Napi::Object::New(env);
    std::lock_guard<std::mutex> lk(prog->statusMu);
    auto arr = Napi::Float64Array::New(env, prog->marks.size());
    for (size_t i = 0; i < prog->marks.size(); ++i) arr[i] = prog->marks[i];
    o.Set("marks", arr);
    o.Set("startMs", prog->startMs);
    o.Set("guardTripped", prog->guardTripped);
    o.Set("currentOp", prog->currentOp.load());
    return o;
  });
}

Napi::Value NowMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), tl::nowMs()); }

Napi::Value InjectBitFlip(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "communicator id");
  uint32_t rank = u32Arg(info, 1, "rank");
  guarded(env, [&] { Registry::get().comm(id)->injectBitFlip(static_cast<int>(rank)); });
  return env.Undefined();
}

Napi::Value AllocView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t parent = u32Arg(info, 0, "parent buffer handle");
  double off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  double n = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  return guarded(env, [&]() -> Napi::Value {
    auto b = Registry::get().allocView(parent, static_cast<int64_t>(off), static_cast<int64_t>(n), state(env).id);
    return Napi::Number::New(env, b->handle);
  });
}

// Schedules cross as {name, phases: number[][][][]} where phases[p][rank] = [[kind, peer, offset, length], ...].
tl::Schedule scheduleArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "schedule must be an object {name, phases}");
  auto o = v.As<Napi::Object>();
  tl::Schedule s;
  s.name = o.Get("name").IsString() ? o.Get("name").As<Napi::String>().Utf8Value() : "custom";
  Napi::Value pv = o.Get("phases");
  if (!pv.IsArray()) throw Napi::TypeError::New(env, "schedule '" + s.name + "': phases must be an array");
  auto phases = pv.As<Napi::Array>();
  for (uint32_t p = 0; p < phases.Length(); ++p) {
    Napi::Value rv = phases.Get(p);
    if (!rv.IsArray()) throw Napi::TypeError::New(env, "schedule '" + s.name + "': phases[" + std::to_string(p) + "] must be an array of ranks");
    auto ranks = rv.As<Napi::Array>();
    std::vector<std::vector<tl::CollStep>> phase(ranks.Length());
    for (uint32_t r = 0; r < ranks.Length(); ++r) {
      Napi::Value sv = ranks.Get(r);
      if (!sv.IsArray()) throw Napi::TypeError::New(env, "schedule '" + s.name + "': phases[" + std::to_string(p) + "][" + std::to_string(r) + "] must be an array of steps");
      auto steps = sv.As<Napi::Array>();
      for (uint32_t k = 0; k < steps.Length(); ++k) {
        Napi::Value st = steps.Get(k);
        auto bad = [&] { return Napi::TypeError::New(env, "schedule '" + s.name + "': phases[" + std::to_string(p) + "][" + std::to_string(r) + "][" + std::to_string(k) + "] must be [kind, peer, offset, length] numbers"); };
        if (!st.IsArray() || st.As<Napi::Array>().Length() != 4) throw bad();
        auto a = st.As<Napi::Array>();
        double f[4];
        for (uint32_t j = 0; j < 4; ++j) {
          if (!a.Get(j).IsNumber()) throw bad();
          f[j] = a.Get(j).As<Napi::Number>().DoubleValue();
        }
        phase[r].push_back(tl::CollStep{static_cast<tl::CollStep::Kind>(static_cast<int>(f[0])), static_cast<int>(f[1]),
                                        static_cast<int64_t>(f[2]), static_cast<int64_t>(f[3])});
      }
    }
    s.phases.push_back(std::move(phase));
  }
  return s;
}

// createComm(bufferHandles, schedule, timeoutMs): one flat f32 buffer per tower, in rank order.
Napi::Value CreateComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "createComm(buffers: number[], schedule, timeoutMs: number)");
  return guarded(env, [&]() -> Napi::Value {
    auto arr = info[0].As<Napi::Array>();
    std::vector<std::shared_ptr<tl::Buffer>> bufs;
    for (uint32_t i = 0; i < arr.Length(); ++i) bufs.push_back(Registry::get().buffer(arr.Get(i).As<Napi::Number>().Uint32Value()));
    auto c = std::make_shared<tl::Communicator>(Registry::get().newHandle(), bufs, scheduleArg(env, info[1]),
                                                static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue()));
    c->ownerEnv = state(env).id;
    Registry::get().addComm(c);
    return Napi::Number::New(env, c->id());
  });
}

Napi::Value SetCommSchedule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "communicator id");
  guarded(env, [&] { Registry::get().comm(id)->setSchedule(scheduleArg(env, info[1])); });
  return env.Undefined();
}

Napi::Value ReleaseComm(const Napi::CallbackInfo& info) {
  Registry::get().releaseComm(u32Arg(info, 0, "communicator id"));
  return info.Env().Undefined();
}

Napi::Value CommStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "communicator id");
  uint32_t rank = u32Arg(info, 1, "rank");
  return guarded(env, [&]() -> Napi::Value {
    auto st = Registry::get().comm(id)->stats(static_cast<int>(rank));
    auto o = Napi::Object::New(env);
    o.Set("totalMs", st.totalMs);
    o.Set("waitMs", st.waitMs);
    return o;
  });
}

// runWith(program, writes: [handle, typedArray, offset?][], reads: handle[]): one hand-off per step. The writes are
// staged (copied) on the JS thread and applied on the device thread before the program; after it, the first
// element of each read buffer, the '@mark' times, the guard state and the collective wait come back together.
Napi::Value RunWith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "program handle");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray())
    throw Napi::TypeError::New(env, "runWith(program, writes: [handle, typedArray, offset?][], reads: handle[])");
  return guarded(env, [&]() -> Napi::Value {
    auto prog = Registry::get().program(h);
    struct Staged { std::shared_ptr<tl::Buffer> buf; size_t byteOffset; std::vector<uint8_t> bytes; };
    auto writes = std::make_shared<std::vector<Staged>>();
    auto wa = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < wa.Length(); ++i) {
      Napi::Value wv = wa.Get(i);
      if (!wv.IsArray()) throw Napi::TypeError::New(env, "runWith: writes[" + std::to_string(i) + "] must be [handle, typedArray, offset?]");
      auto w = wv.As<Napi::Array>();
      auto b = Registry::get().buffer(w.Get(0u).As<Napi::Number>().Uint32Value());
      Napi::Value av = w.Get(1u);
      if (!av.IsTypedArray()) throw Napi::TypeError::New(env, "runWith: writes[" + std::to_string(i) + "][1] must be a typed array");
      auto arr = av.As<Napi::TypedArray>();
      TL_CHECK(arr.TypedArrayType() == arrayTypeFor(b->dtype), "runWith: buffer #" << b->handle << " is " << tl::dtypeName(b->dtype) << "; the typed array does not match");
      int64_t off = w.Length() > 2 ? w.Get(2u).As<Napi::Number>().Int64Value() : 0;
      int64_t n = static_cast<int64_t>(arr.ElementLength());
      TL_CHECK(off >= 0 && off + n <= b->numel, "runWith: " << n << " elements at offset " << off << " do not fit buffer #" << b->handle << " of " << b->numel);
      TL_CHECK(b->device == prog->device, "runWith: buffer #" << b->handle << " is on " << b->device->name() << ", the program on " << prog->device->name());
      void* raw = nullptr;
      NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, arr, nullptr, nullptr, &raw, nullptr, nullptr), Napi::Value());
      size_t esz = tl::dtypeSize(b->dtype);
      const uint8_t* src = static_cast<const uint8_t*>(raw);
      writes->push_back(Staged{b, static_cast<size_t>(off) * esz, std::vector<uint8_t>(src, src + n * esz)});
    }
    std::vector<std::shared_ptr<tl::Buffer>> reads;
    auto ra = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < ra.Length(); ++i) {
      auto b = Registry::get().buffer(ra.Get(i).As<Napi::Number>().Uint32Value());
      TL_CHECK(b->device == prog->device, "runWith: read buffer #" << b->handle << " is not on " << prog->device->name());
      reads.push_back(b);
    }
    struct Out { std::vector<double> values, marks; double startMs = 0, waitMs = 0; bool guard = false; };
    auto out = std::make_shared<Out>();
    auto task = [prog, writes, reads, out] {
      tl::Backend& dev = prog->device->backend();
      for (auto& w : *writes) dev.copyIn(static_cast<uint8_t*>(w.buf->data) + w.byteOffset, w.bytes.data(), w.bytes.size());
      prog->execute();
      for (auto& b : reads) {
        if (b->dtype == tl::DType::F32) { float v; dev.copyOut(&v, b->data, 4); out->values.push_back(v); }
        else if (b->dtype == tl::DType::I32) { int32_t v; dev.copyOut(&v, b->data, 4); out->values.push_back(v); }
        else { uint8_t v; dev.copyOut(&v, b->data, 1); out->values.push_back(v); }
      }
      std::lock_guard<std::mutex> lk(prog->statusMu);
      out->marks = prog->marks;
      out->startMs = prog->startMs;
      out->guard = prog->guardTripped;
      for (auto& op : prog->ops)
        if (op.comm) out->waitMs += op.comm->stats(op.rank).waitMs;
    };
    auto result = [out](Napi::Env e) -> Napi::Value {
      auto o = Napi::Object::New(e);
      auto v = Napi::Float64Array::New(e, out->values.size());
      for (size_t i = 0; i < out->values.size(); ++i) v[i] = out->values[i];
      auto m = Napi::Float64Array::New(e, out->marks.size());
      for (size_t i = 0; i < out->marks.size(); ++i) m[i] = out->marks[i];
      o.Set("values", v);
      o.Set("marks", m);
      o.Set("startMs", out->startMs);
      o.Set("waitMs", out->waitMs);
      o.Set("guardTripped", out->guard);
      return o;
    };
    return submitAsync(env, prog->device, task, result);
  });
}

Napi::Value ReleaseProgram(const Napi::CallbackInfo& info) {
  Registry::get().releaseProgram(u32Arg(info, 0, "program handle"));
  return info.Env().Undefined();
}

Napi::Value Sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "device id");
  return guarded(env, [&]() -> Napi::Value {
    auto dev = Registry::get().device(id);
    return submitAsync(env, dev, [dev] { dev->backend().sync(); });
  });
}

Napi::Value KernelNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "device id");
  return guarded(env, [&]() -> Napi::Value {
    auto dev = Registry::get().device(id);
    const auto& fns = dev->backend().kernels().fns;
    auto arr = Napi::Array::New(env, fns.size());
    uint32_t i = 0;
    for (auto& kv : fns) arr.Set(i++, kv.first);
    return arr;
  });
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  auto s = Registry::get().stats();
  auto o = Napi::Object::New(info.Env());
  o.Set("devices", static_cast<double>(s.devices));
  o.Set("buffers", static_cast<double>(s.buffers));
  o.Set("programs", static_cast<double>(s.programs));
  o.Set("comms", static_cast<double>(s.comms));
  o.Set("bufferBytes", static_cast<double>(s.bufferBytes));
  return o;
}

Napi::Value GemmInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("impl", tl::gemmImplName());
  o.Set("threads", tl::gemmThreads());
  return o;
}

Napi::Value SetGemmThreads(const Napi::CallbackInfo& info) {
  uint32_t n = u32Arg(info, 0, "thread count");
  if (n < 1 || n > 256) throw Napi::RangeError::New(info.Env(), "thread count must be in [1, 256]");
  tl::setGemmThreads(static_cast<int>(n));
  return info.Env().Undefined();
}

// ---- GPU inspection: topology, P2P self-test, the P2P switch (cpp/cuda/gpu_api.h) ---------------------------------

// topology(): {gpus, links, source}; empty (never throws) without the CUDA backend or without a GPU.
Napi::Value Topology(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tl::gpu::Topology t;
#ifdef TL_HAVE_CUDA_BACKEND
  t = tl::gpu::topology();
#endif
  auto gpus = Napi::Array::New(env, t.gpus.size());
  for (size_t i = 0; i < t.gpus.size(); ++i) {
    const auto& g = t.gpus[i];
    auto o = Napi::Object::New(env);
    o.Set("index", g.index);
    o.Set("name", g.name);
    o.Set("pciBusId", g.pciBusId);
    o.Set("memoryBytes", static_cast<double>(g.memoryBytes));
    gpus.Set(i, o);
  }
  auto links = Napi::Array::New(env, t.links.size());
  for (size_t i = 0; i < t.links.size(); ++i) {
    const auto& l = t.links[i];
    auto o = Napi::Object::New(env);
    o.Set("a", l.a);
    o.Set("b", l.b);
    o.Set("kind", l.kind);
    o.Set("p2p", l.p2p);
    if (l.perfRank >= 0) o.Set("perfRank", l.perfRank);
    if (l.nvlinks > 0) o.Set("nvlinks", l.nvlinks);
    o.Set("atomics", l.atomics);
    links.Set(i, o);
  }
  auto o = Napi::Object::New(env);
  o.Set("gpus", gpus);
  o.Set("links", links);
  o.Set("source", t.source);
  return o;
}

// p2pSelfTest(indices): one result per ordered pair of distinct GPUs; [] for []. Blocks the calling thread.
Napi::Value P2PSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "p2pSelfTest(indices: number[])");
  auto arr = info[0].As<Napi::Array>();
  std::vector<int> idx;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < 1024) || d != static_cast<double>(static_cast<int>(d)))
      throw Napi::TypeError::New(env, "p2pSelfTest: GPU indices must be non-negative integers");
    idx.push_back(static_cast<int>(d));
  }
  return guarded(env, [&]() -> Napi::Value {
    std::vector<tl::gpu::PairResult> rs;
#ifdef TL_HAVE_CUDA_BACKEND
    rs = tl::gpu::p2pSelfTest(idx);
#else
    TL_CHECK(idx.empty(), "p2pSelfTest: this build has no CUDA backend (no GPU to test); use cpu devices");
#endif
    auto out = Napi::Array::New(env, rs.size());
    for (size_t i = 0; i < rs.size(); ++i) {
      auto o = Napi::Object::New(env);
      o.Set("src", rs[i].src);
      o.Set("dst", rs[i].dst);
      o.Set("p2p", rs[i].p2p);
      o.Set("ok", rs[i].ok);
      o.Set("gbps", rs[i].gbps);
      o.Set("detail", rs[i].detail);
      out.Set(i, o);
    }
    return out;
  });
}

// setP2PEnabled(enabled): direct P2P between different GPUs for communicators created afterwards (and, for those
// already created, for their next steps: cuda-p2p checks per step and falls back to the host-staged path).
Napi::Value SetP2PEnabled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(env, "setP2PEnabled(enabled: boolean)");
#ifdef TL_HAVE_CUDA_BACKEND
  tl::gpu::setP2PEnabled(info[0].As<Napi::Boolean>().Value());
#endif
  return env.Undefined();
}

void cleanupEnv(EnvState* st) {
  Registry::get().releaseEnv(st->id);  // joins this environment's device threads
  st->tsfn.Release();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, [] {
    tl::registerCpuBackend();
    tl::registerOptionalBackends();
  });
  auto* st = new EnvState{nextEnvId++, CompletionTsfn(), 0};
  st->tsfn = CompletionTsfn::New(env, "towerline-completions", 0, 1, nullptr);
  st->tsfn.Unref(env);
  env.SetInstanceData<EnvState>(st);  // deleted by node-addon-api when the environment is torn down
  env.AddCleanupHook([st] { cleanupEnv(st); });

  exports.Set("backendKinds", Napi::Function::New(env, BackendKinds));
  exports.Set("deviceCount", Napi::Function::New(env, DeviceCount));
  exports.Set("openDevice", Napi::Function::New(env, OpenDevice));
  exports.Set("closeDevice", Napi::Function::New(env, CloseDevice));
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("bufferInfo", Napi::Function::New(env, BufferInfo));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("compile", Napi::Function::New(env, Compile));
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("runWith", Napi::Function::New(env, RunWith));
  exports.Set("releaseProgram", Napi::Function::New(env, ReleaseProgram));
  exports.Set("programStatus", Napi::Function::New(env, ProgramStatus));
  exports.Set("nowMs", Napi::Function::New(env, NowMs));
  exports.Set("injectBitFlip", Napi::Function::New(env, InjectBitFlip));
  exports.Set("allocView", Napi::Function::New(env, AllocView));
  exports.Set("createComm", Napi::Function::New(env, CreateComm));
  exports.Set("setCommSchedule", Napi::Function::New(env, SetCommSchedule));
  exports.Set("releaseComm", Napi::Function::New(env, ReleaseComm));
  exports.Set("commStats", Napi::Function::New(env, CommStats));
  exports.Set("sync", Napi::Function::New(env, Sync));
  exports.Set("kernelNames", Napi::Function::New(env, KernelNames));
  exports.Set("stats", Napi::Function::New(env, Stats));
  exports.Set("gemmInfo", Napi::Function::New(env, GemmInfo));
  exports.Set("setGemmThreads", Napi::Function::New(env, SetGemmThreads));
  exports.Set("topology", Napi::Function::New(env, Topology));
  exports.Set("p2pSelfTest", Napi::Function::New(env, P2PSelfTest));
  exports.Set("setP2PEnabled", Napi::Function::New(env, SetP2PEnabled));
  return exports;
}

}  // namespace

NODE_API_MODULE(towerline, Init)
