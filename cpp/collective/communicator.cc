// Runs a collective schedule among towers: phases of reduce/copy steps separated by barriers with deadlines.
#include "communicator.h"

#include <algorithm>

namespace tl {

using Clock = std::chrono::steady_clock;

static double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Communicator::Communicator(uint32_t id, std::vector<std::shared_ptr<Buffer>> buffers, Schedule schedule, int64_t timeoutMs)
    : id_(id), buffers_(std::move(buffers)), timeoutMs_(timeoutMs), stats_(buffers_.size()) {
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
  validateSchedule(schedule, size(), length());
  current_ = std::make_shared<const Schedule>(std::move(schedule));
}

void Communicator::setSchedule(Schedule s) {
  validateSchedule(s, size(), length());
  auto next = std::make_shared<const Schedule>(std::move(s));
  std::lock_guard<std::mutex> lk(mu_);
  pending_ = std::move(next);
}

bool Communicator::involves(const Device* d) const {
  for (auto& b : buffers_)
    if (b->device.get() == d) return true;
  return false;
}

void Communicator::abort(const std::string& why) {
  std::shared_ptr<RemoteReducer> remote;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (aborted_.empty()) aborted_ = why;
    cv_.notify_all();
    remote = remote_;
  }
  if (remote && inside_.load() > 0) remote->abort(why);  // the other processes stop waiting for this one's remote steps
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

Communicator::RankStats Communicator::stats(int rank) {
  std::lock_guard<std::mutex> lk(mu_);
  TL_CHECK(rank >= 0 && rank < size(), "rank " << rank << " outside [0, " << size() << ")");
  return stats_[rank];
}

void Communicator::barrier(int rank, size_t phase, const Schedule* running) {
  const bool entry = running == nullptr;
  std::unique_lock<std::mutex> lk(mu_);
  const std::string& dev = buffers_[rank]->device->name();
  TL_CHECK(aborted_.empty(), "all-reduce on " << dev << " (rank " << rank << ") stopped: " << aborted_);
  uint64_t gen = generation_;
  if (++arrived_ == size()) {
    arrived_ = 0;
    if (entry && pending_) current_ = std::move(pending_);  // Note [Schedule changes]
    ++generation_;
    cv_.notify_all();
    return;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_.load());
  bool ok = cv_.wait_until(lk, deadline, [&] { return generation_ != gen || !aborted_.empty(); });
  if (generation_ != gen) return;
  if (!ok) {
    std::string why = entry ? "timed out after " + std::to_string(timeoutMs_.load()) +
                                  " ms at the start of the collective waiting for the other towers"
                            : "timed out after " + std::to_string(timeoutMs_.load()) + " ms at phase " + std::to_string(phase) +
                                  " of " + std::to_string(running->phases.size()) + " (" + running->name +
                                  ") waiting for the other towers";
    if (aborted_.empty()) aborted_ = why + " (first noticed by " + dev + ")";
    cv_.notify_all();
    TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") " << why);
  }
  TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") stopped: " << aborted_);
}

void Communicator::execute(int rank) {
  TL_CHECK(rank >= 0 && rank < size(), "collective rank " << rank << " outside [0, " << size() << ")");
  struct Inside {
    std::atomic<int>& n;
    explicit Inside(std::atomic<int>& c) : n(c) { ++n; }
    ~Inside() { --n; }
  } inside(inside_);
  auto t0 = Clock::now();
  double wait = 0;
  std::shared_ptr<const Schedule> sched;
  std::shared_ptr<RemoteReducer> remote;
  auto timedBarrier = [&](size_t phase, bool entry) {
    auto w0 = Clock::now();
    barrier(rank, phase, entry ? nullptr : sched.get());
    wait += msSince(w0);
  };
  timedBarrier(0, true);  // every tower's gradient is complete before anyone reads it
  {
    std::lock_guard<std::mutex> lk(mu_);
    sched = current_;  // the same for every rank of this collective (Note [Schedule changes])
    remote = remote_;
  }
  Buffer& mine = *buffers_[rank];
  for (size_t p = 0; p < sched->phases.size(); ++p) {
    for (const CollStep& s : sched->phases[p][rank]) {
      if (s.kind == CollStep::Remote) {
        remoteStep(rank, s, remote.get());
        continue;
      }
      const Transport& t = *transports_[rank][s.peer];
      if (s.kind == CollStep::Reduce)
        t.reduce(mine, *buffers_[s.peer], s.offset, s.length);
      else
        t.copy(mine, *buffers_[s.peer], s.offset, s.length);
    }
    timedBarrier(p + 1, false);  // nobody writes what a peer may still be reading
  }
  std::lock_guard<std::mutex> lk(mu_);
  stats_[rank].totalMs = msSince(t0);
  stats_[rank].waitMs = wait;
}

}  // namespace tl
