// GPU inspection bindings: topology, p2pSelfTest, setP2PEnabled. They exist in every build; what they do comes
// from the installed gpu::Inspector (Note [GPU inspection hook] in cpp/gpu_inspect.h).
#include "../gpu_inspect.h"
#include "args.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

// topology(): {gpus, links, source}; empty (never throws) without the CUDA backend or without a GPU.
Napi::Value Topology(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const gpu::Topology t = gpu::inspector().topology();
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
    const std::vector<gpu::PairResult> rs = gpu::inspector().p2pSelfTest(idx);
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
  gpu::inspector().setP2PEnabled(info[0].As<Napi::Boolean>().Value());
  return env.Undefined();
}

}  // namespace

void registerGpuBindings(Napi::Env env, Napi::Object exports) {
  exportFn(env, exports, "topology", Topology);
  exportFn(env, exports, "p2pSelfTest", P2PSelfTest);
  exportFn(env, exports, "setP2PEnabled", SetP2PEnabled);
}

}  // namespace napi
}  // namespace tl
