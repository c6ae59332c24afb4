// Process group bindings (cpp/group/): groupSupport, createGroup, groupInfo, groupBarrier, groupAllGather,
// groupBroadcast, groupAllReduce, groupBroadcastBuffer, attachCommGroup, abortGroup, closeGroup. Blocking work
// (rendezvous, control collectives) runs on a worker thread and settles a promise; groupAllReduce and
// groupBroadcastBuffer run on the buffer's device thread.
#include <cmath>
#include <map>
#include <mutex>

#include "../collective/communicator.h"
#include "../group/group.h"
#include "../registry.h"
#include "args.h"
#include "async.h"
#include "bindings.h"

namespace tl {
namespace napi {

namespace {

using group::ProcessGroup;

// Groups by handle, with the environment that created them (closed when it goes away).
struct GroupEntry {
  std::shared_ptr<ProcessGroup> group;
  uint64_t env;
};
std::mutex groupsMu;
std::map<uint32_t, GroupEntry>& groups() {
  static std::map<uint32_t, GroupEntry> m;
  return m;
}

std::shared_ptr<ProcessGroup> groupOf(uint32_t h) {
  std::lock_guard<std::mutex> lk(groupsMu);
  auto it = groups().find(h);
  TL_CHECK_ARG(it != groups().end(), Range, "no process group with handle " << h << " (closed already?)");
  return it->second.group;
}

// Runs `run` on a worker thread; the promise rejects with its native error or resolves with `done(env)`.
class GroupWork final : public Napi::AsyncWorker {
 public:
  GroupWork(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "towerline-group"), deferred_(Napi::Promise::Deferred::New(env)), run_(std::move(run)),
        done_(std::move(done)) {}
  static Napi::Value start(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done = nullptr) {
    auto* w = new GroupWork(env, std::move(run), std::move(done));
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }
  void Execute() override {
    try {
      run_();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (error_)
      deferred_.Reject(toJsError(env, error_).Value());
    else
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::exception_ptr error_;
};

int intField(const Napi::Object& o, const char* key, int lo, int hi, std::optional<int> fallback = std::nullopt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  TL_CHECK_ARG(std::isfinite(d) && std::floor(d) == d && d >= lo && d <= hi, Range,
               "createGroup: '" << key << "' must be an integer in [" << lo << ", " << hi << "]");
  return static_cast<int>(d);
}

std::string strField(const Napi::Object& o, const char* key, std::optional<std::string> fallback = std::nullopt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  TL_CHECK_ARG(v.IsString(), Type, "createGroup: '" << key << "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

group::GroupOptions groupOptionsArg(const Napi::Value& v) {
  TL_CHECK_ARG(v.IsObject(), Type, "createGroup(options: { rank, size, runId, rdzv, proofs, ... })");
  auto o = v.As<Napi::Object>();
  group::GroupOptions g;
  g.size = intField(o, "size", 1, 1 << 20);
  g.rank = intField(o, "rank", 0, g.size - 1);
  g.localSize = intField(o, "localSize", 1, 1 << 20, 1);
  g.localRank = intField(o, "localRank", 0, g.localSize - 1, 0);
  g.slots = intField(o, "slots", 1, 4096, 1);
  g.runId = strField(o, "runId");
  g.rdzv = strField(o, "rdzv");
  g.address = strField(o, "address", std::string("127.0.0.1"));
  g.iface = strField(o, "iface", std::string());
  g.hostname = strField(o, "hostname", std::string());
  g.timeoutMs = intField(o, "timeoutMs", 1, 1 << 30, 30000);
  g.rendezvousTimeoutMs = intField(o, "rendezvousTimeoutMs", 1, 1 << 30, 30000);
  Napi::Value pv = o.Get("proofs");
  TL_CHECK_ARG(pv.IsArray(), Type, "createGroup: 'proofs' must be an array of strings (src/group/token.ts)");
  auto proofs = pv.As<Napi::Array>();
  for (uint32_t i = 0; i < proofs.Length(); ++i) {
    TL_CHECK_ARG(proofs.Get(i).IsString(), Type, "createGroup: proofs[" << i << "] must be a string");
    g.proofs.push_back(proofs.Get(i).As<Napi::String>().Utf8Value());
  }
  return g;
}

int64_t timeoutArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? static_cast<int64_t>(info[i].As<Napi::Number>().DoubleValue()) : 0;
}

std::vector<uint8_t> bytesArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return {};
  TL_CHECK_ARG(info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array, Type,
               what << ": expected a Uint8Array");
  auto a = info[i].As<Napi::Uint8Array>();
  const uint8_t* p = typedArrayData(info.Env(), a);
  return std::vector<uint8_t>(p, p + a.ElementLength());
}

Napi::Value bytesValue(Napi::Env env, const std::vector<uint8_t>& b) {
  auto a = Napi::Uint8Array::New(env, b.size());
  std::copy(b.begin(), b.end(), a.Data());
  return a;
}

Napi::Value GroupSupport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const group::Support s = group::support();
  auto list = [&](const std::vector<std::string>& v) {
    auto a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(i, v[i]);
    return a;
  };
  ObjectOf o(env);
  o.set("available", s.available).set("stores", list(s.stores)).set("transports", list(s.transports));
  if (!s.available) o.set("reason", s.reason);
  if (!s.glooVersion.empty()) o.set("gloo", s.glooVersion);
  return o;
}

Napi::Value CreateGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    group::GroupOptions opts = groupOptionsArg(info.Length() > 0 ? info[0] : env.Undefined());
    const uint64_t owner = envId(env);
    auto made = std::make_shared<uint32_t>(0);
    return GroupWork::start(
        env,
        [opts, owner, made] {
          auto g = group::createProcessGroup(opts);
          const uint32_t h = Registry::get().newHandle();
          std::lock_guard<std::mutex> lk(groupsMu);
          groups()[h] = GroupEntry{g, owner};
          *made = h;
        },
        [made](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *made); });
  });
}

Napi::Value GroupInfo(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    Napi::Env env = info.Env();
    auto g = groupOf(h);
    const group::GroupOptions& o = g->options();
    auto peers = Napi::Array::New(env, g->peers().size());
    for (size_t i = 0; i < g->peers().size(); ++i) {
      const group::PeerInfo& p = g->peers()[i];
      peers.Set(i, Napi::Object(ObjectOf(env)
                                    .set("rank", p.rank)
                                    .set("localRank", p.localRank)
                                    .set("hostname", p.hostname)
                                    .set("address", p.address)
                                    .set("pid", static_cast<double>(p.pid))));
    }
    return ObjectOf(env)
        .set("rank", o.rank)
        .set("size", o.size)
        .set("localRank", o.localRank)
        .set("localSize", o.localSize)
        .set("slots", o.slots)
        .set("runId", o.runId)
        .set("rdzv", o.rdzv)
        .set("timeoutMs", static_cast<double>(o.timeoutMs))
        .set("peers", peers)
        .set("stoppedWith", g->abortedWith());
  });
}

Napi::Value GroupBarrier(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    auto g = groupOf(h);
    const int64_t t = timeoutArg(info, 1);
    return GroupWork::start(info.Env(), [g, t] { g->barrier(t); });
  });
}

Napi::Value GroupAllGather(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    auto g = groupOf(h);
    auto mine = bytesArg(info, 1, "groupAllGather(group, bytes, timeoutMs?)");
    const int64_t t = timeoutArg(info, 2);
    auto out = std::make_shared<std::vector<std::vector<uint8_t>>>();
    return GroupWork::start(
        info.Env(), [g, mine, t, out] { *out = g->allGather(mine, t); },
        [out](Napi::Env e) -> Napi::Value {
          auto a = Napi::Array::New(e, out->size());
          for (size_t i = 0; i < out->size(); ++i) a.Set(i, bytesValue(e, (*out)[i]));
          return a;
        });
  });
}

Napi::Value GroupBroadcast(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    auto g = groupOf(h);
    auto mine = bytesArg(info, 1, "groupBroadcast(group, bytes | null, root, timeoutMs?)");
    const int root = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
    const int64_t t = timeoutArg(info, 3);
    auto out = std::make_shared<std::vector<uint8_t>>();
    return GroupWork::start(
        info.Env(), [g, mine, root, t, out] { *out = g->broadcast(mine, root, t); },
        [out](Napi::Env e) -> Napi::Value { return bytesValue(e, *out); });
  });
}

// The (buffer, slot, offset, length) arguments at 1..4 of a group call on a buffer's range.
struct BufferRange {
  std::shared_ptr<Buffer> buf;
  int slot;
  uint32_t offset, length;
};
BufferRange bufferRangeArgs(const Napi::CallbackInfo& info) {
  return {Registry::get().buffer(u32Arg(info, 1, "buffer handle")), static_cast<int>(u32Arg(info, 2, "slot")),
          u32Arg(info, 3, "offset"), u32Arg(info, 4, "length")};
}

// groupAllReduce(group, buffer, slot, offset, length): the remote all-reduce alone, on the buffer's device thread.
Napi::Value GroupAllReduce(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    auto g = groupOf(h);
    const BufferRange r = bufferRangeArgs(info);
    return submitAsync(info.Env(), r.buf->device, [g, r] { g->allReduce(r.slot, *r.buf, r.offset, r.length); });
  });
}

// groupBroadcastBuffer(group, buffer, slot, offset, length, root): root's range copied to every process, on the
// buffer's device thread.
Napi::Value GroupBroadcastBuffer(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) -> Napi::Value {
    auto g = groupOf(h);
    const BufferRange r = bufferRangeArgs(info);
    const int root = static_cast<int>(u32Arg(info, 5, "root"));
    return submitAsync(info.Env(), r.buf->device, [g, r, root] { g->broadcastBuffer(r.slot, *r.buf, r.offset, r.length, root); });
  });
}

// attachCommGroup(comm, group): the communicator's remote steps run on this group's slot contexts.
Napi::Value AttachCommGroup(const Napi::CallbackInfo& info) {
  return withHandle(info, "communicator id", [&](uint32_t comm) {
    Registry::get().comm(comm)->setRemote(groupOf(u32Arg(info, 1, "group handle")));
  });
}

Napi::Value AbortGroup(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [&](uint32_t h) {
    const std::string why = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "aborted";
    groupOf(h)->abort(why);
  });
}

// closeGroup(group): closes its connections and forgets the handle; never throws for a known handle.
Napi::Value CloseGroup(const Napi::CallbackInfo& info) {
  return withHandle(info, "group handle", [](uint32_t h) {
    std::shared_ptr<ProcessGroup> g;
    {
      std::lock_guard<std::mutex> lk(groupsMu);
      auto it = groups().find(h);
      if (it == groups().end()) return;
      g = it->second.group;
      groups().erase(it);
    }
    g->close();
  });
}

}  // namespace

void registerGroupBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"groupSupport", GroupSupport}, {"createGroup", CreateGroup}, {"groupInfo", GroupInfo},
                           {"groupBarrier", GroupBarrier}, {"groupAllGather", GroupAllGather}, {"groupBroadcast", GroupBroadcast},
                           {"groupAllReduce", GroupAllReduce}, {"groupBroadcastBuffer", GroupBroadcastBuffer}, {"attachCommGroup", AttachCommGroup}, {"abortGroup", AbortGroup},
                           {"closeGroup", CloseGroup}});
  const uint64_t owner = envId(env);
  env.AddCleanupHook([owner] {
    std::vector<std::shared_ptr<ProcessGroup>> mine;
    {
      std::lock_guard<std::mutex> lk(groupsMu);
      for (auto it = groups().begin(); it != groups().end();)
        if (it->second.env == owner) {
          mine.push_back(it->second.group);
          it = groups().erase(it);
        } else {
          ++it;
        }
    }
    for (auto& g : mine) g->close();
  });
}

}  // namespace napi
}  // namespace tl
