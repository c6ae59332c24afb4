// Device and buffer bindings: opening devices, allocating buffers and views, copies in and out, sync, stats.
#include "../program.h"
#include "../registry.h"
#include "../cpu/gemm.h"
#include "args.h"
#include "async.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

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

// The gemmThreads option of openDevice's third argument: 1 when absent (Note [GEMM threads] in cpu/gemm.cc).
int gemmThreadsOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || info[2].IsUndefined()) return 1;
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "openDevice(kind, index, { gemmThreads? }): options must be an object");
  Napi::Value v = info[2].As<Napi::Object>().Get("gemmThreads");
  if (v.IsUndefined()) return 1;
  double n = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 1 && n <= kMaxGemmThreads) || n != static_cast<double>(static_cast<int>(n)))
    throw Napi::RangeError::New(env, "openDevice: gemmThreads must be an integer in [1, " + std::to_string(kMaxGemmThreads) + "]");
  return static_cast<int>(n);
}

Napi::Value OpenDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "openDevice(kind: string, index: number, { gemmThreads?, cpus? })");
  const int threads = gemmThreadsOption(info);
  // cpus: the device thread's CPU, then each GEMM worker's (Note [Thread placement] in src/tower-port/thread-placement.ts).
  std::vector<int> cpus;
  if (info.Length() > 2 && info[2].IsObject() && !info[2].As<Napi::Object>().Get("cpus").IsUndefined())
    cpus = cpusArg(env, info[2].As<Napi::Object>().Get("cpus"), "openDevice: cpus");
  return guarded(env, [&]() -> Napi::Value {
    auto dev = Registry::get().openDevice(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                                          envId(env));
    try {
      if (threads != 1) dev->runBlocking([&] { dev->backend().setGemmThreads(threads); });
      if (!cpus.empty()) dev->runBlocking([&] { dev->backend().setThreadCpus(cpus); });
    } catch (...) {
      Registry::get().closeDevice(dev->id());
      throw;
    }
    return ObjectOf(env).set("id", dev->id()).set("name", dev->name()).set("kind", dev->backend().kind())
        .set("gemmThreads", threads);
  });
}

Napi::Value CloseDevice(const Napi::CallbackInfo& info) {
  return withHandle(info, "device id", [](uint32_t id) { Registry::get().closeDevice(id); });
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dev = u32Arg(info, 0, "device id");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "alloc(device, numel, dtype)");
  double n = info[1].As<Napi::Number>().DoubleValue();
  if (!(n >= 1) || n != static_cast<double>(static_cast<int64_t>(n)))
    throw Napi::RangeError::New(env, "alloc: element count must be a positive integer, got " + std::to_string(n));
  DType dt = info.Length() > 2 ? dtypeArg(env, info[2]) : DType::F32;
  return guarded(env, [&]() -> Napi::Value {
    auto buf = Registry::get().alloc(dev, static_cast<int64_t>(n), dt, envId(env));
    return Napi::Number::New(env, buf->handle);
  });
}

Napi::Value AllocView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t parent = u32Arg(info, 0, "parent buffer handle");
  double off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  double n = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  return guarded(env, [&]() -> Napi::Value {
    auto b = Registry::get().allocView(parent, static_cast<int64_t>(off), static_cast<int64_t>(n), envId(env));
    return Napi::Number::New(env, b->handle);
  });
}

// allocShared(device, parent): `parent`'s memory as a buffer of `device`; canShare(device, parent) says whether it may.
Napi::Value AllocShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dev = u32Arg(info, 0, "device id");
  uint32_t parent = u32Arg(info, 1, "parent buffer handle");
  return guarded(env, [&]() -> Napi::Value { return Napi::Number::New(env, Registry::get().allocShared(dev, parent, envId(env))->handle); });
}

Napi::Value CanShare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dev = u32Arg(info, 0, "device id");
  uint32_t parent = u32Arg(info, 1, "parent buffer handle");
  return guarded(env, [&]() -> Napi::Value { return Napi::Boolean::New(env, Registry::get().canShare(dev, parent)); });
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  return withHandle(info, "buffer handle", [](uint32_t h) { Registry::get().freeBuffer(h); });
}

Napi::Value BufferInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return withHandle(info, "buffer handle", [&](uint32_t h) -> Napi::Value {
    auto b = Registry::get().buffer(h);
    return ObjectOf(env).set("numel", static_cast<double>(b->numel)).set("dtype", dtypeName(b->dtype))
        .set("device", b->device->id());
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
             "write to buffer #" << h << " on " << b->device->name() << ": buffer is " << dtypeName(b->dtype)
                                 << ", so pass a " << arrayNameFor(b->dtype));
    int64_t n = static_cast<int64_t>(arr.ElementLength());
    TL_CHECK(off >= 0 && off == static_cast<double>(static_cast<int64_t>(off)) && static_cast<int64_t>(off) + n <= b->numel,
             "write to buffer #" << h << " on " << b->device->name() << ": " << n << " elements at offset " << off
                                 << " do not fit in " << b->numel << " elements");
    const uint8_t* src = typedArrayData(env, arr);
    size_t esz = dtypeSize(b->dtype);
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
    size_t esz = dtypeSize(b->dtype);
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

Napi::Value Sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return withHandle(info, "device id", [&](uint32_t id) -> Napi::Value {
    auto dev = Registry::get().device(id);
    return submitAsync(env, dev, [dev] { dev->backend().sync(); });
  });
}

Napi::Value KernelNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return withHandle(info, "device id", [&](uint32_t id) -> Napi::Value {
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
  return ObjectOf(info.Env()).set("devices", double(s.devices)).set("buffers", double(s.buffers))
      .set("programs", double(s.programs)).set("comms", double(s.comms)).set("bufferBytes", double(s.bufferBytes));
}

Napi::Value NowMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), nowMs()); }

}  // namespace

void registerDeviceBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"backendKinds", BackendKinds}, {"deviceCount", DeviceCount}, {"openDevice", OpenDevice},
                           {"closeDevice", CloseDevice}, {"alloc", Alloc}, {"allocView", AllocView}, {"allocShared", AllocShared},
                           {"canShare", CanShare}, {"free", Free},
                           {"bufferInfo", BufferInfo}, {"write", Write}, {"read", Read}, {"sync", Sync},
                           {"kernelNames", KernelNames}, {"stats", Stats}, {"nowMs", NowMs}});
}

}  // namespace napi
}  // namespace tl
