// Parameter server bindings (cpp/ps/server.h): psCreate, psPull, psPush, psDrop, psInfo, psSnapshot, psRelease.
// A pull runs on the tower's device thread, a push and a snapshot on the server's; each settles a promise.
#include <map>
#include <mutex>

#include "../check.h"
#include "../ps/server.h"
#include "../registry.h"
#include "args.h"
#include "async.h"
#include "bindings.h"
#include "ps_registry.h"

namespace tl {
namespace napi {

namespace {

using ps::ParameterServer;

std::shared_ptr<Buffer> bufferField(const Napi::Object& o, const char* key) {
  auto v = numberField(o, key);
  TL_CHECK_ARG(v.has_value(), Type, "psCreate: '" << key << "' must be a buffer handle");
  return Registry::get().buffer(static_cast<uint32_t>(*v));
}

// psCreate({ device, weights, grads, hyper, normSq, regLoss, apply, towers, lr: Float32Array, stalenessLr, version })
Napi::Value PsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    TL_CHECK_ARG(info.Length() > 0 && info[0].IsObject(), Type, "psCreate(options: { device, weights, grads, ... })");
    auto o = info[0].As<Napi::Object>();
    ps::ServerConfig c;
    auto dev = numberField(o, "device");
    TL_CHECK_ARG(dev.has_value(), Type, "psCreate: 'device' must be a device id");
    c.device = Registry::get().device(static_cast<uint32_t>(*dev));
    c.weights = bufferField(o, "weights");
    c.grads = bufferField(o, "grads");
    c.hyper = bufferField(o, "hyper");
    c.normSq = bufferField(o, "normSq");
    c.regLoss = bufferField(o, "regLoss");
    c.normSqIn = bufferField(o, "normSqIn");
    auto apply = numberField(o, "apply");
    TL_CHECK_ARG(apply.has_value(), Type, "psCreate: 'apply' must be a program handle");
    c.apply = Registry::get().program(static_cast<uint32_t>(*apply));
    c.towers = static_cast<int>(numberField(o, "towers").value_or(0));
    Napi::Value lr = o.Get("lr");
    TL_CHECK_ARG(lr.IsTypedArray() && lr.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array, Type,
                 "psCreate: 'lr' must be a Float32Array (the learning rate per version)");
    auto lrs = lr.As<Napi::Float32Array>();
    c.lr.assign(lrs.Data(), lrs.Data() + lrs.ElementLength());
    c.stalenessLr = o.Get("stalenessLr").ToBoolean();
    c.version = static_cast<uint64_t>(numberField(o, "version").value_or(0));
    auto server = std::make_shared<ParameterServer>(Registry::get().newHandle(), std::move(c));
    server->ownerEnv = envId(env);
    psServers().add(server->id(), server, server->ownerEnv);
    return Napi::Number::New(env, server->id());
  });
}

}  // namespace

Napi::Value pulledValue(Napi::Env env, const ps::Pulled& p) {
  return ObjectOf(env).set("version", static_cast<double>(p.version)).set("minClock", static_cast<double>(p.minClock))
      .set("clock", static_cast<double>(p.clock))
      .set("startMs", p.startMs).set("endMs", p.endMs);
}

Napi::Value appliedValue(Napi::Env env, const ps::Applied& a) {
  return ObjectOf(env).set("version", static_cast<double>(a.version)).set("clock", static_cast<double>(a.clock))
      .set("lag", static_cast<double>(a.lag)).set("staleness", static_cast<double>(a.staleness)).set("lr", a.lr)
      .set("normSq", a.normSq).set("regLoss", a.regLoss).set("skipped", a.skipped).set("startMs", a.startMs)
      .set("endMs", a.endMs);
}

namespace {

// psPull(server, rank, weightArena): on the arena's device thread.
Napi::Value PsPull(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [&](uint32_t h) -> Napi::Value {
    auto server = psServers().get(h);
    const int rank = static_cast<int>(u32Arg(info, 1, "tower rank"));
    auto dst = Registry::get().buffer(u32Arg(info, 2, "weight arena handle"));
    auto out = std::make_shared<ps::Pulled>();
    return submitAsync(info.Env(), dst->device, [server, rank, dst, out] { *out = server->pull(rank, *dst); },
                       [out](Napi::Env e) { return pulledValue(e, *out); });
  });
}

// psPush(server, rank, gradArena, normSq): on the server's device thread, in the order pushes reach its queue;
// normSq is the gradient's global squared norm (Note [Global norm across shards] in src/async/server.ts).
Napi::Value PsPush(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [&](uint32_t h) -> Napi::Value {
    auto server = psServers().get(h);
    const int rank = static_cast<int>(u32Arg(info, 1, "tower rank"));
    auto src = Registry::get().buffer(u32Arg(info, 2, "gradient arena handle"));
    TL_CHECK_ARG(info.Length() > 3 && info[3].IsNumber(), Type, "psPush(server, rank, gradArena, normSq: number)");
    const float normSq = info[3].As<Napi::Number>().FloatValue();
    auto out = std::make_shared<ps::Applied>();
    return submitAsync(info.Env(), server->devicePtr(), [server, rank, src, out, normSq] { *out = server->push(rank, *src, normSq); },
                       [out](Napi::Env e) { return appliedValue(e, *out); });
  });
}

Napi::Value PsDrop(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [&](uint32_t h) { psServers().get(h)->drop(static_cast<int>(u32Arg(info, 1, "tower rank"))); });
}

Napi::Value PsInfo(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [&](uint32_t h) -> Napi::Value {
    Napi::Env env = info.Env();
    auto i = psServers().get(h)->info();
    auto clocks = Napi::Array::New(env, i.clocks.size());
    auto alive = Napi::Array::New(env, i.alive.size());
    for (size_t q = 0; q < i.clocks.size(); ++q) {
      clocks.Set(q, static_cast<double>(i.clocks[q]));
      alive.Set(q, static_cast<bool>(i.alive[q]));
    }
    return ObjectOf(env).set("version", static_cast<double>(i.version)).set("clocks", clocks).set("alive", alive);
  });
}

// psSnapshot(server, handles): copies of the buffers and their version, taken between two pushes.
Napi::Value PsSnapshot(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [&](uint32_t h) -> Napi::Value {
    auto server = psServers().get(h);
    TL_CHECK_ARG(info.Length() > 1 && info[1].IsArray(), Type, "psSnapshot(server, buffers: number[])");
    auto arr = info[1].As<Napi::Array>();
    std::vector<std::shared_ptr<Buffer>> bufs;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      TL_CHECK_ARG(arr.Get(i).IsNumber(), Type, "psSnapshot: buffers[" << i << "] is not a handle");
      bufs.push_back(Registry::get().buffer(arr.Get(i).As<Napi::Number>().Uint32Value()));
    }
    struct Out { uint64_t version = 0; std::vector<std::vector<float>> data; };
    auto out = std::make_shared<Out>();
    return submitAsync(info.Env(), server->devicePtr(), [server, bufs, out] { out->version = server->snapshot(bufs, out->data); },
                       [out](Napi::Env e) -> Napi::Value {
                         auto tensors = Napi::Array::New(e, out->data.size());
                         for (size_t i = 0; i < out->data.size(); ++i) {
                           auto a = Napi::Float32Array::New(e, out->data[i].size());
                           std::copy(out->data[i].begin(), out->data[i].end(), a.Data());
                           tensors.Set(i, a);
                         }
                         return ObjectOf(e).set("version", static_cast<double>(out->version)).set("tensors", tensors);
                       });
  });
}

Napi::Value PsRelease(const Napi::CallbackInfo& info) {
  return withHandle(info, "server handle", [](uint32_t h) { psServers().remove(h); });
}

}  // namespace

void registerPsBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"psCreate", PsCreate}, {"psPull", PsPull}, {"psPush", PsPush}, {"psDrop", PsDrop},
                           {"psInfo", PsInfo}, {"psSnapshot", PsSnapshot}, {"psRelease", PsRelease}});
  const uint64_t owner = envId(env);
  env.AddCleanupHook([owner] { psServers().releaseEnv(owner); });
}

}  // namespace napi
}  // namespace tl
