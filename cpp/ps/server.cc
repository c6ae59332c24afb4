// The parameter server's pulls, pushes and snapshots (Note [Parameter server] in server.h).
#include "server.h"

#include <algorithm>

#include "../check.h"
#include "../collective/transport.h"
#include "../hyper.h"

namespace tl {
namespace ps {

namespace {

void checkArena(const Buffer& b, const Buffer& master, const char* what, const std::string& op) {
  TL_CHECK(b.dtype == DType::F32 && b.numel == master.numel,
           op << ": " << what << " #" << b.handle << " on " << b.device->name() << " has " << b.numel << " "
              << dtypeName(b.dtype) << " elements; the server's arena has " << master.numel
              << " f32 (a tower of another model?)");
}

}  // namespace

ParameterServer::ParameterServer(uint32_t id, ServerConfig c)
    : id_(id), c_(std::move(c)), version_(c_.version), clocks_(c_.towers, 0), alive_(c_.towers, true),
      pulled_(c_.towers) {
  TL_CHECK_ARG(c_.towers >= 1, Range, "parameter server: expected at least one tower, got " << c_.towers);
  TL_CHECK_ARG(!c_.lr.empty(), Range, "parameter server: the learning-rate table is empty");
  for (const auto* b : {&c_.weights, &c_.grads, &c_.hyper, &c_.normSq, &c_.regLoss})
    TL_CHECK_ARG((*b)->device == c_.device && (*b)->dtype == DType::F32, Range,
                 "parameter server: buffer #" << (*b)->handle << " must be f32 on " << c_.device->name());
  TL_CHECK_ARG(c_.grads->numel == c_.weights->numel, Range,
               "parameter server: the gradient arena has " << c_.grads->numel << " elements, the weights " << c_.weights->numel);
  TL_CHECK_ARG(c_.normSqIn && c_.normSqIn->device == c_.device && c_.normSqIn->dtype == DType::F32 && c_.normSqIn->numel == 1, Range,
               "parameter server: normSqIn must be one f32 on " << c_.device->name());
  TL_CHECK_ARG(c_.hyper->numel >= kHyperUsed, Range, "parameter server: the hyper buffer needs " << kHyperUsed << " slots");
  TL_CHECK_ARG(c_.apply->device == c_.device, Range, "parameter server: the apply program is compiled on "
                                                         << c_.apply->device->name() << ", not " << c_.device->name());
}

void ParameterServer::checkRank(int rank, const char* op) const {
  TL_CHECK_ARG(rank >= 0 && rank < c_.towers, Range, "parameter server " << op << ": tower " << rank << " is not in [0, " << c_.towers << ")");
}

Pulled ParameterServer::recordPull(int rank) {
  std::lock_guard<std::mutex> lk(stateMu_);
  TL_CHECK(alive_[rank], "parameter server: tower " << rank << " was dropped; it cannot pull again");
  Pulled p;
  p.version = version_;
  p.minClock = clocks_[rank];
  p.clock = clocks_[rank];
  for (int q = 0; q < c_.towers; ++q)
    if (alive_[q]) p.minClock = std::min(p.minClock, clocks_[q]);
  pulled_[rank] = p;
  return p;
}

Pulled ParameterServer::pull(int rank, Buffer& dst) {
  checkRank(rank, "pull");
  checkArena(dst, *c_.weights, "weight arena", "parameter server pull");
  const double t0 = nowMs();
  const Transport& t = selectTransport(*dst.device, *c_.device);  // runs on dst's thread (Note [Transports])
  std::shared_lock<std::shared_mutex> lk(weightsMu_);
  Pulled p = recordPull(rank);
  t.copy(dst, *c_.weights, 0, c_.weights->numel);
  dst.device->backend().sync();
  p.startMs = t0;
  p.endMs = nowMs();
  return p;
}

Pulled ParameterServer::pullToHost(int rank, float* host, int64_t offset, int64_t length) {
  checkRank(rank, "pull");
  TL_CHECK(offset >= 0 && length >= 0 && offset + length <= c_.weights->numel, "parameter server pull: range [" << offset << ", "
                                                                                  << offset + length << ") is outside the arena");
  const double t0 = nowMs();
  std::shared_lock<std::shared_mutex> lk(weightsMu_);
  Pulled p = recordPull(rank);
  c_.device->backend().copyOut(host, static_cast<const float*>(c_.weights->data) + offset, static_cast<size_t>(length) * sizeof(float));
  p.startMs = t0;
  p.endMs = nowMs();
  return p;
}

Applied ParameterServer::push(int rank, Buffer& src, float normSq) {
  checkRank(rank, "push");
  checkArena(src, *c_.grads, "gradient arena", "parameter server push");
  const double t0 = nowMs();
  selectTransport(*c_.device, *src.device).copy(*c_.grads, src, 0, c_.grads->numel);  // on the server's thread
  std::unique_lock<std::shared_mutex> lk(weightsMu_);
  Applied a = applyLocked(rank, normSq);
  a.startMs = t0;
  return a;
}

Applied ParameterServer::pushFromHost(int rank, const float* host, int64_t offset, int64_t length, float normSq) {
  checkRank(rank, "push");
  TL_CHECK(offset >= 0 && length >= 0 && offset + length <= c_.grads->numel, "parameter server push: range [" << offset << ", "
                                                                                << offset + length << ") is outside the arena");
  const double t0 = nowMs();
  c_.device->backend().copyIn(static_cast<float*>(c_.grads->data) + offset, host, static_cast<size_t>(length) * sizeof(float));
  std::unique_lock<std::shared_mutex> lk(weightsMu_);
  Applied a = applyLocked(rank, normSq);
  a.startMs = t0;
  return a;
}

Applied ParameterServer::applyLocked(int rank, float normSqIn) {
  Applied a;
  Pulled seen;
  {
    std::lock_guard<std::mutex> lk(stateMu_);
    TL_CHECK(alive_[rank], "parameter server: tower " << rank << " was dropped; its push is refused");
    seen = pulled_[rank];
    a.version = version_;
    a.lag = static_cast<int64_t>(version_ - seen.version);
    a.staleness = clocks_[rank] - seen.minClock;
  }
  const size_t at = static_cast<size_t>(std::min<uint64_t>(a.version, c_.lr.size() - 1));
  a.lr = c_.stalenessLr ? c_.lr[at] / static_cast<float>(1 + a.lag) : c_.lr[at];
  Backend& dev = c_.device->backend();
  float hyper[kHyperSize] = {0};
  hyper[kHyperLr] = a.lr;
  hyper[kHyperStep] = static_cast<float>(a.version + 1);
  hyper[kHyperGradScale] = 1;  // unused by the update; the tower's loss already weighted its gradient
  dev.copyIn(c_.hyper->data, hyper, sizeof(hyper));
  dev.copyIn(c_.normSqIn->data, &normSqIn, sizeof(float));
  c_.apply->execute();
  float normSq = 0, regLoss = 0;
  dev.copyOut(&normSq, c_.normSq->data, sizeof(float));
  dev.copyOut(&regLoss, c_.regLoss->data, sizeof(float));
  {
    std::lock_guard<std::mutex> lk(c_.apply->statusMu);
    a.skipped = c_.apply->guardTripped;
  }
  a.normSq = normSq;
  a.regLoss = regLoss;
  std::lock_guard<std::mutex> lk(stateMu_);
  a.version = ++version_;
  a.clock = ++clocks_[rank];
  a.endMs = nowMs();
  return a;
}

void ParameterServer::drop(int rank) {
  checkRank(rank, "drop");
  std::lock_guard<std::mutex> lk(stateMu_);
  alive_[rank] = false;
}

ParameterServer::Info ParameterServer::info() {
  std::lock_guard<std::mutex> lk(stateMu_);
  return Info{version_, clocks_, alive_};
}

uint64_t ParameterServer::snapshot(const std::vector<std::shared_ptr<Buffer>>& bufs, std::vector<std::vector<float>>& out) {
  std::unique_lock<std::shared_mutex> lk(weightsMu_);
  out.clear();
  for (const auto& b : bufs) {
    TL_CHECK(b->device == c_.device && b->dtype == DType::F32,
             "parameter server snapshot: buffer #" << b->handle << " must be f32 on " << c_.device->name());
    out.emplace_back(static_cast<size_t>(b->numel));
    c_.device->backend().copyOut(out.back().data(), b->data, b->bytes());
  }
  std::lock_guard<std::mutex> slk(stateMu_);
  return version_;
}

}  // namespace ps
}  // namespace tl
