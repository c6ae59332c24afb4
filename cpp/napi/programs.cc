// Program bindings: compile (JS op lists into Program::compile's OpDesc), run, runWith (one hand-off per step, with
// an optional armed fault), releaseProgram, programStatus.
#include <algorithm>

#include "../collective/communicator.h"
#include "../program.h"
#include "../registry.h"
#include "args.h"
#include "async.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

// A Float64Array holding `v`.
Napi::Float64Array float64Array(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

std::string opName(size_t i, const std::string& kernel) { return "op #" + std::to_string(i) + " (" + kernel + ")"; }

std::vector<uint32_t> handleList(Napi::Env env, const Napi::Object& op, const char* key, size_t i, const std::string& kernel) {
  std::vector<uint32_t> out;
  Napi::Value v = op.Get(key);
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(env, opName(i, kernel) + ": '" + key + "' must be an array of buffer handles");
  auto arr = v.As<Napi::Array>();
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value hv = arr.Get(k);
    if (!hv.IsNumber())
      throw Napi::TypeError::New(env, opName(i, kernel) + ": " + key + "[" + std::to_string(k) + "] is not a handle");
    out.push_back(hv.As<Napi::Number>().Uint32Value());
  }
  return out;
}

OpDesc opArg(Napi::Env env, const Napi::Value& ov, size_t i) {
  if (!ov.IsObject()) throw Napi::TypeError::New(env, "op #" + std::to_string(i) + " is not an object");
  auto o = ov.As<Napi::Object>();
  Napi::Value kv = o.Get("kernel");
  if (!kv.IsString()) throw Napi::TypeError::New(env, "op #" + std::to_string(i) + ": 'kernel' must be a string");
  OpDesc d;
  d.kernel = kv.As<Napi::String>().Utf8Value();
  d.in = handleList(env, o, "inputs", i, d.kernel);
  d.out = handleList(env, o, "outputs", i, d.kernel);
  Napi::Value av = o.Get("attrs");
  if (av.IsObject()) {
    auto attrs = av.As<Napi::Object>();
    auto names = attrs.GetPropertyNames();
    for (uint32_t k = 0; k < names.Length(); ++k) {
      std::string name = names.Get(k).As<Napi::String>().Utf8Value();
      Napi::Value val = attrs.Get(name);
      if (!val.IsNumber())
        throw Napi::TypeError::New(env, opName(i, d.kernel) + ": attribute '" + name + "' must be a number");
      d.attrs.values[name] = val.As<Napi::Number>().DoubleValue();
    }
  } else if (!av.IsUndefined()) {
    throw Napi::TypeError::New(env, opName(i, d.kernel) + ": 'attrs' must be an object of numbers");
  }
  return d;
}

// compile(device, ops): every check of every op happens here (Note [Kernel contracts], Note [Special ops]).
Napi::Value Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t devId = u32Arg(info, 0, "device id");
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "compile(device, ops: Op[])");
  auto arr = info[1].As<Napi::Array>();
  std::vector<OpDesc> ops;
  for (uint32_t i = 0; i < arr.Length(); ++i) ops.push_back(opArg(env, arr.Get(i), i));
  return guarded(env, [&]() -> Napi::Value {
    auto prog = Program::compile(Registry::get().device(devId), ops, envId(env));
    return Napi::Number::New(env, Registry::get().addProgram(prog)->handle);
  });
}

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return withHandle(info, "program handle", [&](uint32_t h) -> Napi::Value {
    auto prog = Registry::get().program(h);
    return submitAsync(env, prog->device, [prog] { prog->execute(); });
  });
}

// The 4th argument of runWith: undefined/null (no fault) or {point, kind, ms?, index?}, checked against the program.
std::unique_ptr<FaultSpec> faultArg(Napi::Env env, const Napi::Value& v, const Program& prog) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsObject()) throw Napi::TypeError::New(env, "runWith: fault must be an object { point, kind, ms?, index? }");
  auto o = v.As<Napi::Object>();
  FaultRequest r{numberField(o, "point"), numberField(o, "ms"), numberField(o, "index"), stringField(o, "kind")};
  return std::make_unique<FaultSpec>(checkFault(r, prog.faultNumel));
}

struct StagedWrite {
  std::shared_ptr<Buffer> buf;
  size_t byteOffset;
  std::vector<uint8_t> bytes;
};

StagedWrite stageWrite(Napi::Env env, const Napi::Value& wv, uint32_t i, const Program& prog) {
  const std::string at = "runWith: writes[" + std::to_string(i) + "]";
  if (!wv.IsArray() || !wv.As<Napi::Array>().Get(0u).IsNumber())
    throw Napi::TypeError::New(env, at + " must be [handle, typedArray, offset?]");
  auto w = wv.As<Napi::Array>();
  auto b = Registry::get().buffer(w.Get(0u).As<Napi::Number>().Uint32Value());
  Napi::Value av = w.Get(1u);
  if (!av.IsTypedArray()) throw Napi::TypeError::New(env, at + "[1] must be a typed array");
  auto arr = av.As<Napi::TypedArray>();
  TL_CHECK(arr.TypedArrayType() == arrayTypeFor(b->dtype),
           "runWith: buffer #" << b->handle << " is " << dtypeName(b->dtype) << "; pass a " << arrayNameFor(b->dtype));
  int64_t off = w.Length() > 2 && w.Get(2u).IsNumber() ? w.Get(2u).As<Napi::Number>().Int64Value() : 0;
  int64_t n = static_cast<int64_t>(arr.ElementLength());
  TL_CHECK(off >= 0 && off + n <= b->numel,
           "runWith: " << n << " elements at offset " << off << " do not fit buffer #" << b->handle << " of " << b->numel);
  TL_CHECK(b->device == prog.device,
           "runWith: buffer #" << b->handle << " is on " << b->device->name() << ", the program on " << prog.device->name());
  const size_t esz = dtypeSize(b->dtype);
  const uint8_t* src = typedArrayData(env, arr);
  return StagedWrite{b, static_cast<size_t>(off) * esz, std::vector<uint8_t>(src, src + n * esz)};
}

// runWith(program, writes: [handle, typedArray, offset?][], reads: handle[], fault?): one hand-off per step. The
// writes are staged (copied) on the JS thread and applied on the device thread before the program; after it, the
// first element of each read buffer, the '@mark' times, the guard state and the collective wait come back together.
Napi::Value RunWith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t h = u32Arg(info, 0, "program handle");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray())
    throw Napi::TypeError::New(env, "runWith(program, writes: [handle, typedArray, offset?][], reads: handle[], fault?, chained?)");
  // chained: queued behind a step whose reply JS has not consumed; cancelled (not run) when the device's previous
  // step run tripped its guard, failed or was itself cancelled (Note [Pipelined steps] in src/coordinator/pipeline.ts).
  const bool chained = info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
  return guarded(env, [&]() -> Napi::Value {
    auto prog = Registry::get().program(h);
    std::shared_ptr<const FaultSpec> fault = faultArg(env, info.Length() > 3 ? info[3] : env.Undefined(), *prog);
    auto writes = std::make_shared<std::vector<StagedWrite>>();
    auto wa = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < wa.Length(); ++i) writes->push_back(stageWrite(env, wa.Get(i), i, *prog));
    std::vector<std::shared_ptr<Buffer>> reads;
    auto ra = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < ra.Length(); ++i) {
      if (!ra.Get(i).IsNumber()) throw Napi::TypeError::New(env, "runWith: reads[" + std::to_string(i) + "] is not a handle");
      auto b = Registry::get().buffer(ra.Get(i).As<Napi::Number>().Uint32Value());
      TL_CHECK(b->device == prog->device, "runWith: read buffer #" << b->handle << " is not on " << prog->device->name());
      reads.push_back(b);
    }
    struct Out { std::vector<double> values, marks; double startMs = 0, waitMs = 0; bool guard = false, cancelled = false; };
    auto out = std::make_shared<Out>();
    auto task = [prog, writes, reads, out, fault, chained] {
      Device& device = *prog->device;
      if (chained && device.lastRun != Device::LastRun::Ok) {
        out->cancelled = true;  // lastRun stays as it is: every step queued behind the trip is cancelled too
        return;
      }
      device.lastRun = Device::LastRun::Failed;  // until the program and the reads are done
      Backend& dev = device.backend();
      for (auto& w : *writes) dev.copyIn(static_cast<uint8_t*>(w.buf->data) + w.byteOffset, w.bytes.data(), w.bytes.size());
      prog->execute(fault.get());
      for (auto& b : reads) {
        if (b->dtype == DType::F32) { float v; dev.copyOut(&v, b->data, 4); out->values.push_back(v); }
        else if (b->dtype == DType::I32) { int32_t v; dev.copyOut(&v, b->data, 4); out->values.push_back(v); }
        else { uint8_t v; dev.copyOut(&v, b->data, 1); out->values.push_back(v); }
      }
      std::lock_guard<std::mutex> lk(prog->statusMu);
      out->marks = prog->marks;
      out->startMs = prog->startMs;
      out->guard = prog->guardTripped;
      out->waitMs = prog->collectiveWaitMs();
      device.lastRun = out->guard ? Device::LastRun::Tripped : Device::LastRun::Ok;
    };
    auto result = [out](Napi::Env e) -> Napi::Value {
      const size_t nv = out->values.size(), nm = out->marks.size();
      if (const ReplyMaker* m = replyMaker(e); m && nv + nm <= m->capacity) {  // Note [Reply maker]
        std::copy(out->values.begin(), out->values.end(), m->scratch);
        std::copy(out->marks.begin(), out->marks.end(), m->scratch + nv);
        return m->make.Call({Napi::Number::New(e, double(nv)), Napi::Number::New(e, double(nm)), Napi::Number::New(e, out->startMs),
                             Napi::Number::New(e, out->waitMs), Napi::Boolean::New(e, out->guard), Napi::Boolean::New(e, out->cancelled)});
      }
      auto r = ObjectOf(e).set("values", float64Array(e, out->values)).set("marks", float64Array(e, out->marks))
          .set("startMs", out->startMs).set("waitMs", out->waitMs).set("guardTripped", out->guard);
      if (out->cancelled) r.set("cancelled", true);
      return r;
    };
    return submitAsync(env, prog->device, task, result);
  });
}

// setReplyMaker(make, scratch: Float64Array): Note [Reply maker] in async.h.
Napi::Value SetReplyMaker(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw Napi::TypeError::New(env, "setReplyMaker(make: Function, scratch: Float64Array)");
  setReplyMaker(env, info[0].As<Napi::Function>(), info[1].As<Napi::Float64Array>());
  return env.Undefined();
}

Napi::Value ReleaseProgram(const Napi::CallbackInfo& info) {
  return withHandle(info, "program handle", [](uint32_t h) { Registry::get().releaseProgram(h); });
}

// programStatus(program): {startMs, marks, guardTripped, currentOp}; safe while the program runs (the watchdog).
Napi::Value ProgramStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return withHandle(info, "program handle", [&](uint32_t h) -> Napi::Value {
    auto prog = Registry::get().program(h);
    std::lock_guard<std::mutex> lk(prog->statusMu);
    return ObjectOf(env).set("marks", float64Array(env, prog->marks)).set("startMs", prog->startMs)
        .set("guardTripped", prog->guardTripped).set("currentOp", prog->currentOp.load());
  });
}

}  // namespace

void registerProgramBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"compile", Compile}, {"run", Run}, {"runWith", RunWith}, {"releaseProgram", ReleaseProgram},
                           {"setReplyMaker", SetReplyMaker},
                           {"programStatus", ProgramStatus}});
}

}  // namespace napi
}  // namespace tl
