// Communicator bindings: schedules from JS (deep-copied, then validated natively: Note [One schedule validator]),
// createComm, setCommSchedule, releaseComm, commStats and validateSchedule.
#include <cmath>

#include "../collective/communicator.h"
#include "../registry.h"
#include "args.h"
#include "async.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

// JSON.stringify(v), for messages about malformed input.
std::string jsonOf(Napi::Env env, const Napi::Value& v) {
  try {
    Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
    Napi::Value s = json.Get("stringify").As<Napi::Function>().Call(json, {v});
    return s.IsString() ? s.As<Napi::String>().Utf8Value() : "undefined";
  } catch (const Napi::Error&) {
    return "(a value JSON cannot show)";
  }
}

// JS `typeof v`.
const char* typeOf(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_function: return "function";
    case napi_bigint: return "bigint";
    default: return "object";
  }
}

// An integer a schedule may hold exactly (Number.isInteger within the safe range).
bool safeInteger(const Napi::Value& v, int64_t* out) {
  if (!v.IsNumber()) return false;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

// Schedules cross as {name, phases: number[][][][], collective?: 'all-reduce' | 'broadcast' | 'reduce-scatter' |
// 'all-gather' | 'barrier', shards?: [offset, length][]}, phases[p][rank] =
// [[kind, peer, offset, length], ...]. This makes the native deep copy and checks its shape; validateSchedule checks
// the rest, on the copy.
Schedule scheduleArg(Napi::Env env, const Napi::Value& v, int ranks, int64_t length) {
  Schedule s;
  Napi::Value nv = v.IsObject() ? v.As<Napi::Object>().Get("name") : env.Undefined();
  s.name = nv.IsString() ? nv.As<Napi::String>().Utf8Value() : "?";
  const std::string where = scheduleWhere(s.name, ranks, length);
  Napi::Value pv = v.IsObject() ? v.As<Napi::Object>().Get("phases") : env.Undefined();
  TL_CHECK_ARG(pv.IsArray(), Type, where << ": expected { name, phases: CollStep[][][] }");
  Napi::Value cv = v.As<Napi::Object>().Get("collective");
  const std::string collective = cv.IsString() ? cv.As<Napi::String>().Utf8Value() : cv.IsUndefined() ? "all-reduce" : "?";
  if (collective == "all-reduce") s.collective = Collective::AllReduce;
  else if (collective == "broadcast") s.collective = Collective::Broadcast;
  else if (collective == "reduce-scatter") s.collective = Collective::ReduceScatter;
  else if (collective == "all-gather") s.collective = Collective::AllGather;
  else if (collective == "barrier") s.collective = Collective::Barrier;
  else
    TL_CHECK_ARG(false, Type, where << ": collective must be 'all-reduce' (the default), 'broadcast', 'reduce-scatter', "
                                       "'all-gather' or 'barrier', got " << jsonOf(env, cv));
  Napi::Value sv = v.As<Napi::Object>().Get("shards");
  if (!sv.IsUndefined()) {
    TL_CHECK_ARG(sv.IsArray(), Type, where << ": shards must be an array of [offset, length], got " << jsonOf(env, sv));
    auto shards = sv.As<Napi::Array>();
    for (uint32_t r = 0; r < shards.Length(); ++r) {
      Napi::Value e = shards.Get(r);
      int64_t f[2];
      bool ok = e.IsArray() && e.As<Napi::Array>().Length() == 2;
      for (uint32_t j = 0; ok && j < 2; ++j) ok = safeInteger(e.As<Napi::Array>().Get(j), &f[j]);
      TL_CHECK_ARG(ok, Type, where << ": shards[" << r << "] must be [offset, length] integers, got " << jsonOf(env, e));
      s.shards.emplace_back(f[0], f[1]);
    }
  }
  auto phases = pv.As<Napi::Array>();
  for (uint32_t p = 0; p < phases.Length(); ++p) {
    Napi::Value rv = phases.Get(p);
    const std::string at = where + ": phases[" + std::to_string(p) + "]";
    TL_CHECK_ARG(rv.IsArray() && rv.As<Napi::Array>().Length() == static_cast<uint32_t>(ranks), Type,
                 at << " must list exactly " << ranks << " towers' steps, got "
                    << (rv.IsArray() ? std::to_string(rv.As<Napi::Array>().Length()) : std::string(typeOf(rv))));
    auto rankList = rv.As<Napi::Array>();
    std::vector<std::vector<CollStep>> phase(ranks);
    for (uint32_t r = 0; r < rankList.Length(); ++r) {
      Napi::Value sv = rankList.Get(r);
      TL_CHECK_ARG(sv.IsArray(), Type, at << "[" << r << "] must be an array of steps");
      auto steps = sv.As<Napi::Array>();
      for (uint32_t k = 0; k < steps.Length(); ++k) {
        Napi::Value st = steps.Get(k);
        int64_t f[4];
        bool ok = st.IsArray() && st.As<Napi::Array>().Length() == 4;
        for (uint32_t j = 0; ok && j < 4; ++j) ok = safeInteger(st.As<Napi::Array>().Get(j), &f[j]);
        TL_CHECK_ARG(ok, Type, at << "[" << r << "][" << k << "] must be [kind, peer, offset, length] integers, got " << jsonOf(env, st));
        phase[r].push_back(CollStep{f[0], f[1], f[2], f[3]});
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
    std::vector<std::shared_ptr<Buffer>> bufs;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      TL_CHECK_ARG(arr.Get(i).IsNumber(), Type, "createComm: buffers[" << i << "] is not a handle");
      bufs.push_back(Registry::get().buffer(arr.Get(i).As<Napi::Number>().Uint32Value()));
    }
    TL_CHECK_ARG(!bufs.empty(), Range, "createComm: a communicator needs at least one tower buffer");
    Schedule s = scheduleArg(env, info[1], static_cast<int>(bufs.size()), bufs[0]->numel);
    auto c = std::make_shared<Communicator>(Registry::get().newHandle(), bufs, std::move(s),
                                            static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue()));
    c->ownerEnv = envId(env);
    Registry::get().addComm(c);
    return Napi::Number::New(env, c->id());
  });
}

// setCommSchedule(comm, schedule): validated now, used from the next collective on (Note [Schedule changes]).
Napi::Value SetCommSchedule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "communicator id");
  guarded(env, [&] {
    auto c = Registry::get().comm(id);
    c->setSchedule(scheduleArg(env, info.Length() > 1 ? info[1] : env.Undefined(), c->size(), c->length()));
  });
  return env.Undefined();
}

Napi::Value ReleaseComm(const Napi::CallbackInfo& info) {
  return withHandle(info, "communicator id", [](uint32_t id) { Registry::get().releaseComm(id); });
}

Napi::Value CommStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = u32Arg(info, 0, "communicator id");
  uint32_t rank = u32Arg(info, 1, "rank");
  return guarded(env, [&]() -> Napi::Value {
    auto c = Registry::get().comm(id);
    auto st = c->stats(static_cast<int>(rank));
    return ObjectOf(env).set("totalMs", st.totalMs).set("waitMs", st.waitMs).set("phases", c->phasesInForce())
        .set("fused", c->fusedInForce());
  });
}

// validateSchedule(schedule, ranks, length): throws the first reason the schedule is not a valid all-reduce.
Napi::Value ValidateSchedule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    int64_t ranks = 0, length = 0;
    TL_CHECK_ARG(info.Length() > 2 && safeInteger(info[1], &ranks) && safeInteger(info[2], &length), Type,
                 "validateSchedule(schedule, ranks: integer, length: integer)");
    TL_CHECK_ARG(ranks >= 1 && ranks <= 65536 && length >= 0, Range,
                 "validateSchedule: ranks must be in [1, 65536] and length >= 0, got " << ranks << " and " << length);
    validateSchedule(scheduleArg(env, info[0], static_cast<int>(ranks), length), static_cast<int>(ranks), length);
  });
  return env.Undefined();
}

}  // namespace

void registerCommBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"createComm", CreateComm}, {"setCommSchedule", SetCommSchedule}, {"releaseComm", ReleaseComm},
                           {"commStats", CommStats}, {"validateSchedule", ValidateSchedule}});
}

}  // namespace napi
}  // namespace tl
