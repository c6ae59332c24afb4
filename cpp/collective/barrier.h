// The barrier the towers of a communicator meet at between phases: spins briefly, then blocks, with a deadline and
// a stop that wakes everyone at once.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "../idle_work.h"

namespace tl {

// Note [Spinning barrier]: a small all-reduce is a few barriers around sub-microsecond copies, so the barrier is
// its cost. A thread that blocks on a condition variable needs the kernel to wake it (tens of microseconds on a
// busy host), so an arriving tower first spins on the barrier's generation counter, with a pause instruction, for
// a bounded time, and only then sleeps on the condition variable with the deadline, exactly as before. The spin is
// adaptive per kind of wait (the entry barrier of a collective absorbs the towers' start skew, the phase barriers
// only the imbalance of equal work): a wait released while spinning doubles that kind's budget (up to kMaxSpinNs),
// a wait that had to sleep halves it (down to kMinSpinNs). Halving alone can lock a pair of towers into sleeping: once
// the budget is low, each waiter sleeps, so its peer, released by it, reaches the next barrier first and sleeps too,
// a wake-up per barrier (tens of microseconds on the bench VM), and no wait is ever released while spinning, so the
// budget never grows back (the 1 KB all-reduce bench read 10-90 us a collective in such runs against 0.5 us in the
// others). So every kProbeEvery-th wait of a thread under a lowered budget spins the whole kMaxSpinNs: released while
// spinning, it restores the budget to kMaxSpinNs; else it halves as any sleeping wait. When the barrier has more parties than the machine has
// hardware threads, a spinning tower would hold the core its peer needs, so it yields instead of pausing.
// The last tower to arrive runs the caller's `last` action (installing a pending schedule: Note [Schedule
// changes]), then resets the count and publishes the next generation; it takes the mutex to notify only when someone sleeps
// (a sleeper registers under the mutex before it checks the generation, so no wake-up is lost).
// Cost per barrier, the common case of a small collective (Note [Collective executor] counts the rest): one atomic
// add on the word holding the count and the generation, and for the last tower one store (count 0, next
// generation) and no clock read; a waiting tower reads the clock twice (when it starts waiting and when it is released: the wait it reports), and spins
// kQuickSpins pauses (a microsecond or two) before it looks at the clock for its spin budget. No lock is taken
// unless someone sleeps. The spin budgets sit on a line of their own and are written only when they change, so the
// line the waiters spin on is written only by arrivals and the release.
class SpinBarrier {
 public:
  enum class Result { Released, Stopped, TimedOut };
  enum Kind { kEntry = 0, kPhase = 1 };
  static constexpr int64_t kMaxSpinNs = 50'000, kMinSpinNs = 1'000;
  static constexpr uint32_t kQuickSpins = 128, kProbeEvery = 16;

  explicit SpinBarrier(int parties);

  // Waits until every party has arrived, the barrier is stopped, or `timeoutMs` passed (measured from when this
  // party gives up spinning). `last` runs on the party that completes the barrier, before the others go on. A party
  // that waits first runs what its thread put off (Note [Wake-ups in idle time] in idle_work.h).
  // `waitedNs` receives how long this party waited (0 for the party that completed the barrier).
  template <class Last>
  Result arrive(Kind kind, int64_t timeoutMs, Last&& last, int64_t& waitedNs) {
    waitedNs = 0;
    if (stop_.load(std::memory_order_acquire)) return Result::Stopped;
    const uint64_t old = state_.fetch_add(1, std::memory_order_acq_rel);
    const uint64_t gen = old >> 32;
    if (static_cast<int>(old & 0xffffffffu) + 1 == parties_) {
      last();
      release(gen);  // the count back to 0 and the next generation, in one store
      return Result::Released;
    }
    const int64_t t0 = nowNs();
    IdleWork::runHere();  // Note [Wake-ups in idle time]: this party waits anyway
    Result r = spin(kind, gen, nowNs()) ? Result::Released : block(gen, timeoutMs);
    waitedNs = nowNs() - t0;
    return r;
  }
  static int64_t nowNs();

  // Stops the barrier for good: every waiting and later arrival returns Stopped. The first cause is kept.
  void stop(const std::string& why);
  // Stops with `why` unless already stopped; returns the cause in force.
  std::string stopOnce(const std::string& why);
  bool stopped() const { return stop_.load(std::memory_order_acquire); }
  std::string cause();

 private:
  void release(uint64_t gen);
  bool spin(Kind kind, uint64_t gen, int64_t t0);
  Result block(uint64_t gen, int64_t timeoutMs);

  const int parties_;
  const bool yield_;  // more parties than hardware threads: yield the core while spinning
  uint64_t generation() const { return state_.load(std::memory_order_acquire) >> 32; }
  // The generation (high 32 bits, wrapping) and the count of parties arrived in it (low 32 bits), in one word: an
  // arrival is one atomic add that also tells the generation, a release one store, and waiters spin on that line.
  alignas(64) std::atomic<uint64_t> state_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  alignas(64) std::atomic<int64_t> budgetNs_[2];  // off the generation's line: waiters write it, everyone reads that
  std::mutex mu_;
  std::condition_variable cv_;
  std::string cause_;
};

}  // namespace tl
