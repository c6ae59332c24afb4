// GPU inspection bindings: topology, p2pSelfTest, setP2PEnabled. They exist in every build; what they do comes
// from the installed gpu::Inspector (Note [GPU inspection hook] in cpp/gpu_inspect.h).
#include "../gpu_inspect.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

// One JS array of `items`, each converted by `toJs`.
template <typename T, typename F>
Napi::Array arrayOf(Napi::Env env, const std::vector<T>& items, F&& toJs) {
  auto arr = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) arr.Set(i, toJs(items[i]));
  return arr;
}

// topology(): {gpus, links, source}; empty (never throws) without the CUDA backend or without a GPU.
Napi::Value Topology(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const gpu::Topology t = gpu::inspector().topology();
  auto gpus = arrayOf(env, t.gpus, [&](const gpu::GpuInfo& g) -> Napi::Value {
    return ObjectOf(env).set("index", g.index).set("name", g.name).set("pciBusId", g.pciBusId)
        .set("memoryBytes", static_cast<double>(g.memoryBytes));
  });
  auto links = arrayOf(env, t.links, [&](const gpu::LinkInfo& l) -> Napi::Value {
    ObjectOf o(env);
    o.set("a", l.a).set("b", l.b).set("kind", l.kind).set("p2p", l.p2p).set("atomics", l.atomics);
    if (l.perfRank >= 0) o.set("perfRank", l.perfRank);
    if (l.nvlinks > 0) o.set("nvlinks", l.nvlinks);
    return o;
  });
  return ObjectOf(env).set("gpus", gpus).set("links", links).set("source", t.source);
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
    return arrayOf(env, gpu::inspector().p2pSelfTest(idx), [&](const gpu::PairResult& r) -> Napi::Value {
      return ObjectOf(env).set("src", r.src).set("dst", r.dst).set("p2p", r.p2p).set("ok", r.ok).set("gbps", r.gbps)
          .set("detail", r.detail);
    });
  });
}

// setP2PEnabled(enabled): direct P2P between different GPUs for communicators created afterwards (and, for those
// already created, for their next steps: cuda-p2p checks per step and falls back to the host-staged path).
Napi::Value SetP2PEnabled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(env, "setP2PEnabled(enabled: boolean)");
  gpu::inspector().setP2PEnabled(info[0].As<Napi::Boolean>().Value());
  return env.Undefined();
}

}  // namespace

void registerGpuBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"topology", Topology}, {"p2pSelfTest", P2PSelfTest}, {"setP2PEnabled", SetP2PEnabled}});
}

}  // namespace napi
}  // namespace tl
