// Runs a collective schedule among towers: phases of reduce/copy steps separated by barriers with deadlines.
#include "communicator.h"

#include <algorithm>
#include <chrono>

namespace tl {

Communicator::Communicator(uint32_t id, std::vector<std::shared_ptr<Buffer>> buffers, Schedule schedule, int64_t timeoutMs)
    : id_(id), buffers_(std::move(buffers)), timeoutMs_(timeoutMs), barrier_(static_cast<int>(buffers_.size())),
      slots_(buffers_.size()) {
  TL_CHECK(buffers_.size() >= 1, "a communicator needs at least one tower buffer");
  int64_t n = buffers_[0]->numel;
  for (size_t r = 0; r < buffers_.size(); ++r) {
    TL_CHECK(buffers_[r]->dtype == DType::F32, "collective buffer of rank " << r << " must be f32");
    TL_CHECK(buffers_[r]->numel == n, "collective buffers must have equal sizes: rank 0 has " << n << " elements, rank "
                                                                                          << r << " has " << buffers_[r]->numel);
    for (size_t q = 0; q < r; ++q)
      TL_CHECK(buffers_[q]->device != buffers_[r]->device,
               "ranks " << q << " and " << r << " are on the same device " << buffers_[r]->device->name()
                        << "; each tower needs its own device (open cpu:0, cpu:1, ...)");
  }
  transports_.assign(buffers_.size(), std::vector<const Transport*>(buffers_.size(), nullptr));
  for (size_t d = 0; d < buffers_.size(); ++d)
    for (size_t s = 0; s < buffers_.size(); ++s)
      if (d != s) transports_[d][s] = &selectTransport(*buffers_[d]->device, *buffers_[s]->device);
  current_ = install(std::move(schedule));
}

std::shared_ptr<const Communicator::Installed> Communicator::install(Schedule s) {
  validateSchedule(s, size(), length());
  auto canPush = [this](int r, int peer, int q) {
    return transports_[r][peer]->canPush(*buffers_[r]->device, *buffers_[peer]->device, *buffers_[q]->device);
  };
  ExecPlan plan = planExecution(s, size(), canPush);
  for (auto& phase : plan.phases)
    for (auto& steps : phase)
      for (ExecStep& e : steps)
        for (int q : e.pushTo) e.pushBuffers.push_back(buffers_[q].get());
  return std::make_shared<const Installed>(Installed{std::move(s), std::move(plan)});
}

void Communicator::setSchedule(Schedule s) {
  auto next = install(std::move(s));
  std::lock_guard<std::mutex> lk(mu_);
  pending_ = std::move(next);
  hasPending_.store(true, std::memory_order_release);
}

bool Communicator::involves(const Device* d) const {
  for (auto& b : buffers_)
    if (b->device.get() == d) return true;
  return false;
}

void Communicator::abort(const std::string& why) {
  barrier_.stop(why);
  std::shared_ptr<RemoteReducer> remote;
  {
    std::lock_guard<std::mutex> lk(mu_);
    remote = remote_;
  }
  if (remote && anyInside()) remote->abort(why);  // the other processes stop waiting for this one's remote steps
}

void Communicator::setRemote(std::shared_ptr<RemoteReducer> remote) {
  std::lock_guard<std::mutex> lk(mu_);
  remote_ = std::move(remote);
}

void Communicator::remoteStep(int rank, const CollStep& s, RemoteReducer* remote) {
  const std::string& dev = buffers_[rank]->device->name();
  TL_CHECK(remote != nullptr, "all-reduce on " << dev << " (rank " << rank << "): the schedule has a remote step but the "
                                               << "communicator has no process group; attach one (attachCommGroup)");
  TL_CHECK(s.peer < remote->slots(), "all-reduce on " << dev << " (rank " << rank << "): remote step on slot " << s.peer << " but "
                                                      << remote->describe() << " has " << remote->slots() << " slot(s)");
  remote->allReduce(static_cast<int>(s.peer), *buffers_[rank], s.offset, s.length);
}

bool Communicator::anyInside() const {
  for (const RankSlot& s : slots_)
    if (s.inside.load()) return true;
  return false;
}

Communicator::RankStats Communicator::stats(int rank) {
  TL_CHECK(rank >= 0 && rank < size(), "rank " << rank << " outside [0, " << size() << ")");
  return RankStats{slots_[rank].totalMs.load(std::memory_order_relaxed), slots_[rank].waitMs.load(std::memory_order_relaxed)};
}

int64_t Communicator::barrier(int rank, size_t phase, const Installed* running) {
  const bool entry = running == nullptr;
  const std::string& dev = buffers_[rank]->device->name();
  const int64_t timeoutMs = timeoutMs_.load(std::memory_order_relaxed);
  auto installPending = [&] {
    if (!entry || !hasPending_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lk(mu_);  // Note [Schedule changes]
    if (pending_) current_ = std::move(pending_);
    hasPending_.store(false, std::memory_order_relaxed);
  };
  int64_t waitedNs = 0;
  const SpinBarrier::Result r = barrier_.arrive(entry ? SpinBarrier::kEntry : SpinBarrier::kPhase, timeoutMs, installPending, waitedNs);
  if (r == SpinBarrier::Result::Released) return waitedNs;
  if (r == SpinBarrier::Result::TimedOut) {
    const std::string why =
        entry ? "timed out after " + std::to_string(timeoutMs) + " ms at the start of the collective waiting for the other towers"
              : "timed out after " + std::to_string(timeoutMs) + " ms at phase " + std::to_string(phase) + " of " +
                    std::to_string(running->plan.phases.size()) + " (" + running->schedule.name + ") waiting for the other towers";
    barrier_.stopOnce(why + " (first noticed by " + dev + ")");
    TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") " << why);
  }
  TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") stopped: " << barrier_.cause());
}

void Communicator::runStep(int rank, const ExecStep& e, RemoteReducer* remote) {
  const CollStep& s = e.step;
  if (s.kind == CollStep::Remote) {
    remoteStep(rank, s, remote);
    return;
  }
  Buffer& mine = *buffers_[rank];
  const Transport& t = *transports_[rank][s.peer];
  if (s.kind == CollStep::Copy) {
    t.copy(mine, *buffers_[s.peer], s.offset, s.length);
  } else if (e.pushTo.empty()) {
    t.reduce(mine, *buffers_[s.peer], s.offset, s.length);
  } else {
    t.reduceAndPush(mine, *buffers_[s.peer], e.pushBuffers, s.offset, s.length);
  }
}

void Communicator::execute(int rank) {
  TL_CHECK(rank >= 0 && rank < size(), "collective rank " << rank << " outside [0, " << size() << ")");
  RankSlot& slot = slots_[rank];
  struct Inside {
    std::atomic<bool>& flag;
    explicit Inside(std::atomic<bool>& f) : flag(f) { flag.store(true); }
    ~Inside() { flag.store(false, std::memory_order_release); }
  } inside(slot.inside);
  const int64_t t0 = SpinBarrier::nowNs();
  int64_t waitNs = barrier(rank, 0, nullptr);  // every tower's gradient is complete before anyone reads it
  // The same for every rank of this collective, and not replaced before every rank has left it (Note [Schedule
  // changes]), so a plain pointer is enough.
  const Installed* sched = current_.get();
  std::shared_ptr<RemoteReducer> remote;
  if (sched->plan.remote) {
    std::lock_guard<std::mutex> lk(mu_);
    remote = remote_;
  }
  const auto& phases = sched->plan.phases;
  for (size_t p = 0; p < phases.size(); ++p) {
    for (const ExecStep& e : phases[p][rank]) runStep(rank, e, remote.get());
    waitNs += barrier(rank, p + 1, sched);  // nobody writes what a peer may still be reading
  }
  slot.totalMs.store(static_cast<double>(SpinBarrier::nowNs() - t0) / 1e6, std::memory_order_relaxed);
  slot.waitMs.store(static_cast<double>(waitNs) / 1e6, std::memory_order_relaxed);
}

}  // namespace tl
