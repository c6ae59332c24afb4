// The spinning barrier (Note [Spinning barrier] in barrier.h).
#include "barrier.h"

#include <chrono>
#include <thread>

#include "../affinity.h"

namespace tl {

namespace {

using Clock = std::chrono::steady_clock;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

SpinBarrier::SpinBarrier(int parties)
    : parties_(parties), yield_(parties > machineThreads()) {
  for (auto& b : budgetNs_) b.store(kMaxSpinNs, std::memory_order_relaxed);
}

void SpinBarrier::release(uint64_t gen) {
  state_.store(((gen + 1) & 0xffffffffu) << 32, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
}

int64_t SpinBarrier::nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

bool SpinBarrier::spin(Kind kind, uint64_t gen, int64_t t0) {
  std::atomic<int64_t>& budget = budgetNs_[kind];
  const int64_t base = budget.load(std::memory_order_relaxed);
  // A probe (Note [Spinning barrier]): now and then a wait under a lowered budget spins the whole kMaxSpinNs.
  thread_local uint32_t waits = 0;
  const bool probe = base < kMaxSpinNs && ++waits % kProbeEvery == 0;
  const int64_t ns = probe ? kMaxSpinNs : base;
  auto released = [&] {
    if (generation() == gen) return false;
    if (base < kMaxSpinNs)  // no write once at the cap
      budget.store(probe ? kMaxSpinNs : std::min(kMaxSpinNs, base * 2), std::memory_order_relaxed);
    return true;
  };
  if (!yield_)  // the common short wait: a bounded number of pauses, no clock read
    for (uint32_t i = 0; i < kQuickSpins; ++i) {
      if (released()) return true;
      cpuRelax();
    }
  for (uint32_t i = 1;; ++i) {
    if (released()) return true;
    if (stop_.load(std::memory_order_relaxed)) return false;
    if (yield_)
      std::this_thread::yield();
    else
      cpuRelax();
    if ((i & 31) == 0 && nowNs() - t0 > ns) break;
  }
  if (base > kMinSpinNs) budget.store(std::max(kMinSpinNs, base / 2), std::memory_order_relaxed);
  return false;
}

SpinBarrier::Result SpinBarrier::block(uint64_t gen, int64_t timeoutMs) {
  std::unique_lock<std::mutex> lk(mu_);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
  auto done = [&] { return (state_.load(std::memory_order_seq_cst) >> 32) != gen || stop_.load(std::memory_order_acquire); };
  const bool ok = cv_.wait_until(lk, deadline, done);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  if (generation() != gen) return Result::Released;
  return ok ? Result::Stopped : Result::TimedOut;
}

void SpinBarrier::stop(const std::string& why) { stopOnce(why); }

std::string SpinBarrier::stopOnce(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  if (cause_.empty()) cause_ = why;
  stop_.store(true, std::memory_order_seq_cst);
  cv_.notify_all();
  return cause_;
}

std::string SpinBarrier::cause() {
  std::lock_guard<std::mutex> lk(mu_);
  return cause_;
}

}  // namespace tl
