// Parameter-server link bindings (Note [Parameter-server link] in cpp/ps/link.h): psLinkConnect, psLinkSendWork,
// psLinkSendStop, psLinkRecvGradient, psPushStaged (server side); psLinkRecvWork, psLinkSendGradient (worker side);
// psLinkSendBuffers, psLinkRecvBuffers (a shard's state between servers); psLinkAbort, psLinkClose. Each (peer,
// tower slot) is a channel with its own thread and staging memory; the bytes go between that staging and a device's
// arena natively, never through JS.
#include <cmath>
#include <map>
#include <mutex>

#include "../check.h"
#include "../ps/link.h"
#include "../ps/server.h"
#include "../ps/task_thread.h"
#include "../registry.h"
#include "args.h"
#include "async.h"
#include "bindings.h"
#include "ps_registry.h"

namespace tl {
namespace napi {

namespace {

// What a message's header holds; src/async/remote-protocol.ts gives the values their meaning.
struct Header {
  int64_t kind = 0, tower = 0, batch = 0, version = 0;
  double values[12] = {0};
};
constexpr int kValues = 12;
enum Tag : uint64_t { kHeaderDown = 0, kDataDown = 1, kHeaderUp = 2, kDataUp = 3 };
uint64_t tagOf(uint32_t slot, Tag t) { return uint64_t(slot) * 4 + t; }

struct Channel {
  ps::TaskThread thread;
  Header header;
  std::vector<float> staging;
};

struct LinkState {
  std::shared_ptr<ps::Link> link;
  ps::TaskThread control;  // connecting
  std::mutex mu;
  std::map<std::pair<int, uint32_t>, std::shared_ptr<Channel>> channels;

  std::shared_ptr<Channel> channel(int peer, uint32_t slot, int64_t length) {
    std::lock_guard<std::mutex> lk(mu);
    auto& c = channels[{peer, slot}];
    if (!c) c = std::make_shared<Channel>();
    if (c->staging.size() < static_cast<size_t>(length)) c->staging.resize(static_cast<size_t>(length));
    return c;
  }
  ps::Link& connected() {
    TL_CHECK(link, "parameter-server link: not connected yet");
    return *link;
  }
};

HandleTable<LinkState>& links() {
  static auto* t = new HandleTable<LinkState>("parameter-server link");
  return *t;
}

SubmitFn queueOf(ps::TaskThread& t) {
  return [&t](std::function<void()> task, std::function<void(std::exception_ptr)> done) { t.submit(std::move(task), std::move(done)); };
}

int64_t intOf(const Napi::Object& o, const char* key, int64_t fallback) {
  auto v = numberField(o, key);
  return v && std::isfinite(*v) ? static_cast<int64_t>(*v) : fallback;
}

Header headerArg(const Napi::Value& v) {
  TL_CHECK_ARG(v.IsObject(), Type, "parameter-server link: a header must be { kind, tower, batch, version, values? }");
  auto o = v.As<Napi::Object>();
  Header h;
  h.kind = intOf(o, "kind", 0);
  h.tower = intOf(o, "tower", 0);
  h.batch = intOf(o, "batch", 0);
  h.version = intOf(o, "version", 0);
  Napi::Value vals = o.Get("values");
  if (vals.IsArray()) {
    auto a = vals.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length() && i < kValues; ++i) h.values[i] = a.Get(i).ToNumber().DoubleValue();
  }
  return h;
}

Napi::Value headerValue(Napi::Env env, const Header& h) {
  auto vals = Napi::Array::New(env, kValues);
  for (int i = 0; i < kValues; ++i) vals.Set(i, h.values[i]);
  return ObjectOf(env).set("kind", static_cast<double>(h.kind)).set("tower", static_cast<double>(h.tower))
      .set("batch", static_cast<double>(h.batch)).set("version", static_cast<double>(h.version)).set("values", vals);
}

struct Args {
  std::shared_ptr<LinkState> state;
  int peer;
  uint32_t slot;
};

// (link, peer, slot, ...) of every channel call.
Args channelArgs(const Napi::CallbackInfo& info) {
  return Args{links().get(u32Arg(info, 0, "link handle")), static_cast<int>(u32Arg(info, 1, "peer rank")), u32Arg(info, 2, "tower slot")};
}

double timeoutArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : 0;
}

// psLinkConnect({ rank, size, runId, rdzv, address?, iface?, timeoutMs? }) -> Promise<handle>
Napi::Value PsLinkConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    TL_CHECK_ARG(info.Length() > 0 && info[0].IsObject(), Type, "psLinkConnect(options: { rank, size, runId, rdzv })");
    auto o = info[0].As<Napi::Object>();
    ps::LinkOptions opts;
    opts.rank = static_cast<int>(intOf(o, "rank", -1));
    opts.size = static_cast<int>(intOf(o, "size", 0));
    opts.runId = stringField(o, "runId").value_or("");
    opts.rdzv = stringField(o, "rdzv").value_or("");
    opts.address = stringField(o, "address").value_or("127.0.0.1");
    opts.iface = stringField(o, "iface").value_or("");
    opts.timeoutMs = intOf(o, "timeoutMs", 30000);
    auto state = std::make_shared<LinkState>();
    const uint32_t h = Registry::get().newHandle();
    links().add(h, state, envId(env));
    return submitAsync(env, queueOf(state->control), [state, opts] { state->link = ps::connectLink(opts); },
                       [h](Napi::Env e) { return Napi::Number::New(e, h); });
  });
}

// psLinkSendWork(link, peer, slot, header, server, rank, offset, length) -> Promise<{ version, minClock, ... }>:
// the master weights [offset, offset+length) at this moment (read on the server's device thread), after the header.
Napi::Value PsLinkSendWork(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    Header h = headerArg(info[3]);
    auto server = psServers().get(u32Arg(info, 4, "server handle"));
    const int rank = static_cast<int>(u32Arg(info, 5, "tower rank"));
    const int64_t offset = u32Arg(info, 6, "offset"), length = u32Arg(info, 7, "length");
    auto c = a.state->channel(a.peer, a.slot, length);
    auto out = std::make_shared<ps::Pulled>();
    auto state = a.state;
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      server->device().runBlocking([&] { *out = server->pullToHost(rank, c->staging.data(), offset, length); });
      c->header = h;
      c->header.version = static_cast<int64_t>(out->version);
      c->header.values[0] = static_cast<double>(out->clock - out->minClock);  // this server's staleness of the push to come
      ps::Link& l = state->connected();
      l.send(a.peer, tagOf(a.slot, kHeaderDown), &c->header, sizeof(Header), 0);
      l.send(a.peer, tagOf(a.slot, kDataDown), c->staging.data(), static_cast<size_t>(length) * sizeof(float), 0);
    }, [out](Napi::Env e) { return pulledValue(e, *out); });
  });
}

// psLinkSendStop(link, peer, slot, header, timeoutMs): a header alone (the end of a tower's work).
Napi::Value PsLinkSendStop(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    Header h = headerArg(info[3]);
    const int64_t timeoutMs = static_cast<int64_t>(timeoutArg(info, 4));
    auto c = a.state->channel(a.peer, a.slot, 0);
    auto state = a.state;
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      c->header = h;
      state->connected().send(a.peer, tagOf(a.slot, kHeaderDown), &c->header, sizeof(Header), timeoutMs);
    });
  });
}

// psLinkRecvGradient(link, peer, slot, length) -> Promise<header>: waits (until psLinkAbort) for a tower's gradient.
Napi::Value PsLinkRecvGradient(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    const int64_t length = u32Arg(info, 3, "length");
    auto c = a.state->channel(a.peer, a.slot, length);
    auto state = a.state;
    auto out = std::make_shared<Header>();
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      ps::Link& l = state->connected();
      l.recv(a.peer, tagOf(a.slot, kHeaderUp), out.get(), sizeof(Header), 0);
      l.recv(a.peer, tagOf(a.slot, kDataUp), c->staging.data(), static_cast<size_t>(length) * sizeof(float), 0);
    }, [out](Napi::Env e) { return headerValue(e, *out); });
  });
}

// psPushStaged(link, peer, slot, server, rank, offset, length, normSq) -> Promise<applied>: the gradient
// psLinkRecvGradient received, applied on the server's device thread (Note [Parameter server]); normSq: the whole
// gradient's squared norm (Note [Global norm across shards] in src/async/server.ts).
Napi::Value PsPushStaged(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    auto server = psServers().get(u32Arg(info, 3, "server handle"));
    const int rank = static_cast<int>(u32Arg(info, 4, "tower rank"));
    const int64_t offset = u32Arg(info, 5, "offset"), length = u32Arg(info, 6, "length");
    TL_CHECK_ARG(info.Length() > 7 && info[7].IsNumber(), Type, "psPushStaged(..., normSq: number): the gradient's global squared norm");
    const float normSq = info[7].As<Napi::Number>().FloatValue();
    auto c = a.state->channel(a.peer, a.slot, length);
    auto out = std::make_shared<ps::Applied>();
    return submitAsync(info.Env(), server->devicePtr(), [=] { *out = server->pushFromHost(rank, c->staging.data(), offset, length, normSq); },
                       [out](Napi::Env e) { return appliedValue(e, *out); });
  });
}

// psLinkRecvWork(link, peer, slot, weightArena, offset, length, timeoutMs) -> Promise<header>: a worker's tower waits
// for its next work; the weights go from staging into its arena on its device thread.
Napi::Value PsLinkRecvWork(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    auto arena = Registry::get().buffer(u32Arg(info, 3, "weight arena handle"));
    const int64_t offset = u32Arg(info, 4, "offset"), length = u32Arg(info, 5, "length");
    const int64_t timeoutMs = static_cast<int64_t>(timeoutArg(info, 6));
    TL_CHECK_ARG(arena->dtype == DType::F32 && offset + length <= arena->numel, Range,
                 "psLinkRecvWork: [" << offset << ", " << offset + length << ") does not fit arena #" << arena->handle);
    auto c = a.state->channel(a.peer, a.slot, length);
    auto state = a.state;
    auto out = std::make_shared<Header>();
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      ps::Link& l = state->connected();
      l.recv(a.peer, tagOf(a.slot, kHeaderDown), out.get(), sizeof(Header), timeoutMs);
      if (out->kind != 1) return;  // not work (the end): no weights follow
      l.recv(a.peer, tagOf(a.slot, kDataDown), c->staging.data(), static_cast<size_t>(length) * sizeof(float), timeoutMs);
      arena->device->runBlocking([&] {
        arena->device->backend().copyIn(static_cast<float*>(arena->data) + offset, c->staging.data(), static_cast<size_t>(length) * sizeof(float));
      });
    }, [out](Napi::Env e) { return headerValue(e, *out); });
  });
}

// psLinkSendGradient(link, peer, slot, gradArena, offset, length, header, timeoutMs): the arena's [offset,
// offset+length) (read on its device thread) after the header.
Napi::Value PsLinkSendGradient(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    auto arena = Registry::get().buffer(u32Arg(info, 3, "gradient arena handle"));
    const int64_t offset = u32Arg(info, 4, "offset"), length = u32Arg(info, 5, "length");
    Header h = headerArg(info[6]);
    const int64_t timeoutMs = static_cast<int64_t>(timeoutArg(info, 7));
    TL_CHECK_ARG(arena->dtype == DType::F32 && offset + length <= arena->numel, Range,
                 "psLinkSendGradient: [" << offset << ", " << offset + length << ") does not fit arena #" << arena->handle);
    auto c = a.state->channel(a.peer, a.slot, length);
    auto state = a.state;
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      arena->device->runBlocking([&] {
        arena->device->backend().copyOut(c->staging.data(), static_cast<float*>(arena->data) + offset, static_cast<size_t>(length) * sizeof(float));
      });
      c->header = h;
      ps::Link& l = state->connected();
      l.send(a.peer, tagOf(a.slot, kHeaderUp), &c->header, sizeof(Header), timeoutMs);
      l.send(a.peer, tagOf(a.slot, kDataUp), c->staging.data(), static_cast<size_t>(length) * sizeof(float), timeoutMs);
    });
  });
}

// Buffers of one device (a shard's state: weights, optimizer slots, EMA) and their total elements.
struct BufferList {
  std::vector<std::shared_ptr<Buffer>> bufs;
  int64_t total = 0;
};

BufferList bufferListArg(const Napi::CallbackInfo& info, size_t i, const char* call) {
  TL_CHECK_ARG(info.Length() > i && info[i].IsArray(), Type, call << ": argument " << i << " must be an array of buffer handles");
  auto arr = info[i].As<Napi::Array>();
  BufferList l;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    TL_CHECK_ARG(arr.Get(k).IsNumber(), Type, call << ": buffers[" << k << "] is not a handle");
    auto b = Registry::get().buffer(arr.Get(k).As<Napi::Number>().Uint32Value());
    TL_CHECK_ARG(b->dtype == DType::F32 && (l.bufs.empty() || b->device == l.bufs.front()->device), Range,
                 call << ": buffer #" << b->handle << " must be f32, on the device of the first");
    l.bufs.push_back(b);
    l.total += b->numel;
  }
  return l;
}

// Copies every buffer of `l` to (out) or from (!out) consecutive ranges of `staging`, on their device's thread.
void stageBuffers(const BufferList& l, std::vector<float>& staging, bool out) {
  if (l.bufs.empty()) return;
  l.bufs.front()->device->runBlocking([&] {
    Backend& dev = l.bufs.front()->device->backend();
    float* at = staging.data();
    for (const auto& b : l.bufs) {
      out ? dev.copyOut(at, b->data, b->bytes()) : dev.copyIn(b->data, at, b->bytes());
      at += b->numel;
    }
  });
}

// psLinkSendBuffers(link, peer, slot, buffers, header, up, timeoutMs): the header, then the buffers' values one
// after another (read together in one task on their device thread, so between two pushes), on the up (towards the
// lead) or down tags. No data message when the list is empty.
Napi::Value PsLinkSendBuffers(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    BufferList l = bufferListArg(info, 3, "psLinkSendBuffers");
    Header h = headerArg(info[4]);
    const bool up = info.Length() > 5 && info[5].ToBoolean();
    const int64_t timeoutMs = static_cast<int64_t>(timeoutArg(info, 6));
    auto c = a.state->channel(a.peer, a.slot, l.total);
    auto state = a.state;
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      stageBuffers(l, c->staging, true);
      c->header = h;
      ps::Link& link = state->connected();
      link.send(a.peer, tagOf(a.slot, up ? kHeaderUp : kHeaderDown), &c->header, sizeof(Header), timeoutMs);
      if (l.total > 0) link.send(a.peer, tagOf(a.slot, up ? kDataUp : kDataDown), c->staging.data(), static_cast<size_t>(l.total) * sizeof(float), timeoutMs);
    });
  });
}

// psLinkRecvBuffers(link, peer, slot, buffers, up, withHeader, timeoutMs) -> Promise<header>: what
// psLinkSendBuffers sent (its header first when withHeader; else the header was taken already), into the buffers.
Napi::Value PsLinkRecvBuffers(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    BufferList l = bufferListArg(info, 3, "psLinkRecvBuffers");
    const bool up = info.Length() > 4 && info[4].ToBoolean();
    const bool withHeader = info.Length() > 5 && info[5].ToBoolean();
    const int64_t timeoutMs = static_cast<int64_t>(timeoutArg(info, 6));
    auto c = a.state->channel(a.peer, a.slot, l.total);
    auto state = a.state;
    auto out = std::make_shared<Header>();
    return submitAsync(info.Env(), queueOf(c->thread), [=] {
      ps::Link& link = state->connected();
      if (withHeader) link.recv(a.peer, tagOf(a.slot, up ? kHeaderUp : kHeaderDown), out.get(), sizeof(Header), timeoutMs);
      if (l.total == 0) return;
      link.recv(a.peer, tagOf(a.slot, up ? kDataUp : kDataDown), c->staging.data(), static_cast<size_t>(l.total) * sizeof(float), timeoutMs);
      stageBuffers(l, c->staging, false);
    }, [out](Napi::Env e) { return headerValue(e, *out); });
  });
}

// psLinkAbort(link, peer, slot): fails the channel's waits now and later (a tower that missed its deadline).
Napi::Value PsLinkAbort(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a = channelArgs(info);
    if (a.state->link)
      for (Tag t : {kHeaderDown, kDataDown, kHeaderUp, kDataUp}) a.state->link->abort(a.peer, tagOf(a.slot, t));
    return info.Env().Undefined();
  });
}

void closeState(const std::shared_ptr<LinkState>& s) {
  if (s->link) s->link->close();
  std::lock_guard<std::mutex> lk(s->mu);
  for (auto& kv : s->channels) kv.second->thread.stop();
}

Napi::Value PsLinkClose(const Napi::CallbackInfo& info) {
  return withHandle(info, "link handle", [](uint32_t h) {
    if (auto s = links().remove(h)) closeState(s);
  });
}

}  // namespace

void registerPsLinkBindings(Napi::Env env, Napi::Object exports) {
  exportAll(env, exports, {{"psLinkConnect", PsLinkConnect}, {"psLinkSendWork", PsLinkSendWork}, {"psLinkSendStop", PsLinkSendStop},
                           {"psLinkRecvGradient", PsLinkRecvGradient}, {"psPushStaged", PsPushStaged},
                           {"psLinkRecvWork", PsLinkRecvWork}, {"psLinkSendGradient", PsLinkSendGradient},                            {"psLinkSendBuffers", PsLinkSendBuffers}, {"psLinkRecvBuffers", PsLinkRecvBuffers},
                           {"psLinkAbort", PsLinkAbort}, {"psLinkClose", PsLinkClose}});
  const uint64_t owner = envId(env);
  env.AddCleanupHook([owner] {
    for (auto& s : links().releaseEnv(owner)) closeState(s);
  });
}

}  // namespace napi
}  // namespace tl
