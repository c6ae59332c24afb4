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
  setSchedule(std::move(schedule));
}

void Communicator::setSchedule(Schedule s) {
  validateSchedule(s, size(), buffers_[0]->numel);
  std::lock_guard<std::mutex> lk(mu_);
  TL_CHECK(arrived_ == 0, "cannot change the reduction schedule while a collective is running; change it between steps");
  schedule_ = std::move(s);
}

bool Communicator::involves(const Device* d) const {
  for (auto& b : buffers_)
    if (b->device.get() == d) return true;
  return false;
}

void Communicator::abort(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  if (aborted_.empty()) aborted_ = why;
  cv_.notify_all();
}

Communicator::RankStats Communicator::stats(int rank) {
  std::lock_guard<std::mutex> lk(mu_);
  TL_CHECK(rank >= 0 && rank < size(), "rank " << rank << " outside [0, " << size() << ")");
  return stats_[rank];
}

void Communicator::barrier(int rank, size_t phase) {
  std::unique_lock<std::mutex> lk(mu_);
  const std::string& dev = buffers_[rank]->device->name();
  TL_CHECK(aborted_.empty(), "all-reduce on " << dev << " (rank " << rank << ") stopped: " << aborted_);
  uint64_t gen = generation_;
  if (++arrived_ == size()) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_.load());
  bool ok = cv_.wait_until(lk, deadline, [&] { return generation_ != gen || !aborted_.empty(); });
  if (generation_ != gen) return;
  if (!ok) {
    std::string why = "timed out after " + std::to_string(timeoutMs_.load()) + " ms at phase " + std::to_string(phase) + " of " +
                      std::to_string(schedule_.phases.size()) + " (" + schedule_.name + ") waiting for the other towers";
    if (aborted_.empty()) aborted_ = why + " (first noticed by " + dev + ")";
    cv_.notify_all();
    TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") " << why);
  }
  TL_FAIL("all-reduce on " << dev << " (rank " << rank << ") stopped: " << aborted_);
}

void Communicator::execute(int rank) {
  TL_CHECK(rank >= 0 && rank < size(), "collective rank " << rank << " outside [0, " << size() << ")");
  auto t0 = Clock::now();
  double wait = 0;
  auto timedBarrier = [&](size_t phase) {
    auto w0 = Clock::now();
    barrier(rank, phase);
    wait += msSince(w0);
  };
  timedBarrier(0);  // every tower's gradient is complete before anyone reads it
  Buffer& mine = *buffers_[rank];
  for (size_t p = 0; p < schedule_.phases.size(); ++p) {
    for (const CollStep& s : schedule_.phases[p][rank]) {
      const Transport& t = *transports_[rank][s.peer];
      if (s.kind == CollStep::Reduce)
        t.reduce(mine, *buffers_[s.peer], s.offset, s.length);
      else {
        t.copy(mine, *buffers_[s.peer], s.offset, s.length);
        int expected = rank;
        if (s.length > 0 && flipRank_.compare_exchange_strong(expected, -1)) {
          uint32_t bits = 0;
          float* at = static_cast<float*>(mine.data) + s.offset + s.length / 2;  // mid-chunk: a live value
          mine.device->backend().copyOut(&bits, at, 4);
          bits ^= 1u << 22;  // the top mantissa bit: a silent corruption that survives rounding into the weights
          mine.device->backend().copyIn(at, &bits, 4);
        }
      }
    }
    timedBarrier(p + 1);  // nobody writes what a peer may still be reading
  }
  std::lock_guard<std::mutex> lk(mu_);
  stats_[rank].totalMs = msSince(t0);
  stats_[rank].waitMs = wait;
}

void validateSchedule(const Schedule& s, int ranks, int64_t length) {
  for (size_t p = 0; p < s.phases.size(); ++p) {
    const auto& phase = s.phases[p];
    TL_CHECK(static_cast<int>(phase.size()) == ranks,
             "schedule '" << s.name << "' phase " << p << " lists " << phase.size() << " ranks; the communicator has " << ranks);
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& st : phase[r]) {
        TL_CHECK(st.kind == CollStep::Reduce || st.kind == CollStep::Copy,
                 "schedule '" << s.name << "' phase " << p << " rank " << r << ": step kind must be 0 (reduce) or 1 (copy)");
        TL_CHECK(st.peer >= 0 && st.peer < ranks && st.peer != r,
                 "schedule '" << s.name << "' phase " << p << " rank " << r << ": peer " << st.peer << " must be another rank in [0, " << ranks << ")");
        TL_CHECK(st.offset >= 0 && st.length >= 0 && st.offset + st.length <= length,
                 "schedule '" << s.name << "' phase " << p << " rank " << r << ": range [" << st.offset << ", " << st.offset + st.length
                              << ") is outside the " << length << "-element buffer");
      }
    // Within a phase, what rank r writes (its own buffer) must not overlap what any peer reads from r.
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& w : phase[r])
        for (int q = 0; q < ranks; ++q)
          for (const CollStep& rd : phase[q])
            if (rd.peer == r && rd.offset < w.offset + w.length && w.offset < rd.offset + rd.length && w.length > 0 && rd.length > 0)
              TL_FAIL("schedule '" << s.name << "' phase " << p << ": rank " << r << " writes [" << w.offset << ", " << w.offset + w.length
                                   << ") while rank " << q << " reads [" << rd.offset << ", " << rd.offset + rd.length
                                   << ") of it; split them into different phases");
  }
}

}  // namespace tl
