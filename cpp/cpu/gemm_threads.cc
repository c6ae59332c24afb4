// A device's GEMM threads (Note [GEMM threads] in gemm.cc): a small pool whose threads only decide who computes
// which slab of a product, never how it is cut, and the calling thread's binding.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../affinity.h"
#include "gemm.h"

namespace tl {
namespace {

thread_local GemmThreads* tlsThreads = nullptr;

// Note [Pool spin]: a step runs its kernels back to back, each handing its pieces to the pool, so a worker that
// slept after every job would pay a wake-up (a futex wake and a reschedule, tens of microseconds on an idle core) per
// kernel, and the device thread as long again waiting for it to finish. So a worker spins up to kSpin for the next
// job before it sleeps, and the device thread spins up to kSpin for the workers to finish before it sleeps; both then
// block on the condition variables as before (a slow or descheduled thread costs time, never a lost job or wake-up:
// the predicates are read under the mutex). The spin decides only when a thread looks, never what it computes.
// A worker's spin for the next job adapts to the gaps it sees, between kSpin and kSpinMax: when a job finds it
// asleep less than kSpinMax after its previous job ended, it spins twice that gap next time (capped); a longer gap
// sets it back to kSpin. An MLP step's serial stretch between its two large GEMMs (about 0.1 ms of small GEMMs,
// softmax and activations) otherwise cost two wake-ups per step on 2 threads, and on a VM waking a halted vCPU
// costs tens of microseconds (issue 16: the non-GEMM part of the MNIST step did not shrink on 2 threads; the floor,
// GEMMs back to back, never pays one). Idle devices still sleep after kSpinMax at most.
// While the device thread runs a step program (GemmThreads::hold), a worker spins up to kHeld between jobs: a worker
// preempted in a serial stretch (e.g. by the coordinator's thread, woken on its CPU: Note [Hand-off to a spinning
// worker]) would otherwise find its budget spent when it runs again and sleep, and every product after it would pay
// a wake-up (on the bench VM a futex wake of a halted vCPU cost 3% of the device thread's samples). Outside programs
// the budget above applies, so an idle device stops spinning within kSpinMax. A pool with more threads than the
// machine has hardware threads never spins longer for a program: its spinning threads would hold the cores the
// others need.
constexpr std::chrono::microseconds kSpin{50}, kSpinMax{400}, kHeld{2000};

// Note [Hand-off to a spinning worker]: when a device thread finishes a task, it settles the task's promise by waking
// the JS thread (a thread-safe function: an eventfd write). On the bench VM that write cost the device thread about
// 30 us per step (a halted vCPU's wake-up), between one step program and the next although the next was queued
// (Note [Pipelined steps]), and the JS thread, woken from the device thread's CPU, often preempted the device thread.
// A GEMM worker is idle at that moment, spinning for its next job (Note [Pool spin]), so it does the write, off the
// device thread's critical path, and the woken JS thread tends to run where its waker runs (the scheduler's wake
// affinity), on the worker's CPU: the 1-tower overhead per step went from 125 to 8-14 us (docs/benchmarks.md).
// handOff(f) queues f; a spinning worker runs it, and when no worker spins the caller does, at once. Every f runs
// exactly once, in the order handed off (all run under drainMu_, first in first out). The two sides check each other
// Dekker-style: the caller queues, then reads spinning_; a worker leaving its spin decrements spinning_, then looks
// at the queue; with sequentially consistent atomics at least one of them sees the other, so nothing is left queued
// with nobody to run it. A worker that leaves its spin because something was handed off runs it while still counted
// in spinning_, then spins on: it used to decrement first, and the caller, reading spinning_ a few hundred
// nanoseconds after it queued, saw 0 and won drainMu_ in about a third of the steps, so it did the write itself
// (1 tower, 2 cores, the AVX2 VM of 2026-12-01: the settle took a mean of 11 us on the device thread before, 3.3-4.2
// after; the mean gap between two step programs went from 17.9 to 12-14 us, and bench/towers-step.ts's 1-tower
// overhead per step from 10-22 us to 5-10 us, three runs each). Nothing is lost by staying counted: until the
// worker decrements, it is spinning or draining, and either way it looks at the queue again before it stops.

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or `budget` has passed; returns done().
template <class F>
bool spinUntil(F done, std::chrono::microseconds budget = kSpin) {
  const auto until = std::chrono::steady_clock::now() + budget;
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpuRelax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) return done();
  }
}

}  // namespace

// The pool behind a GemmThreads: size()-1 threads waiting for a job; the caller is participant 0. Slabs are handed
// out one at a time from a shared counter, so an uneven split or a slow thread costs nothing in correctness.
class GemmThreads::Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }
  int size() const { return n_; }
  void resize(int n) {
    stop();
    start(n);
  }
  // Restarts the workers, worker i (1-based participant) pinned to masks[i-1]; empty: they inherit the caller's mask.
  void setWorkerCpus(std::vector<std::vector<int>> masks) {
    const int n = n_;
    stop();
    masks_ = std::move(masks);
    start(n);
  }
  void hold(bool on) { held_.store(on, std::memory_order_relaxed); }
  bool spinning() const { return spinning_.load(std::memory_order_relaxed) > 0; }
  bool heldSpin() const { return held_.load(std::memory_order_relaxed) && !oversubscribed_; }
  void handOff(std::function<void()> f) {  // Note [Hand-off to a spinning worker]
    {
      std::lock_guard<std::mutex> lk(sideMu_);
      side_.push_back(std::move(f));
      sideCount_.fetch_add(1);
    }
    if (spinning_.load() == 0) drainSide();
  }
  // Runs what is queued, unless another thread is running it: that one looks again after it lets go, so nothing
  // queued meanwhile is left behind, and nobody ever waits for a drainer that was preempted.
  void drainSide() {
    while (sideCount_.load() > 0) {
      std::unique_lock<std::mutex> drain(drainMu_, std::try_to_lock);
      if (!drain.owns_lock()) return;
      for (;;) {
        std::function<void()> f;
        {
          std::lock_guard<std::mutex> lk(sideMu_);
          if (side_.empty()) break;
          f = std::move(side_.front());
          side_.pop_front();
          sideCount_.fetch_sub(1);
        }
        f();
      }
    }
  }
  // A worker's spin for its next job: `budget` (Note [Pool spin]); while the device thread runs a program (held_),
  // up to kHeld, and `budget` more once the program ends.
  template <class F>
  bool spinForJob(F news, std::chrono::microseconds budget) {
    using Clock = std::chrono::steady_clock;
    auto now = Clock::now();
    auto until = now + budget;
    const auto heldUntil = now + kHeld;
    for (int i = 0;; ++i) {
      if (news()) return true;
      cpuRelax();
      if ((i & 63) == 63) {
        now = Clock::now();
        if (heldSpin() && now < heldUntil) until = std::max(until, now + budget);
        if (now >= until) return news();
      }
    }
  }
  std::vector<std::vector<int>> workerCpus() {
    std::unique_lock<std::mutex> lk(m_);
    started_.wait(lk, [this] { return ready_ == n_ - 1; });
    return seen_;
  }

  void forEach(int count, const std::function<void(int)>& f) {
    if (n_ <= 1 || count <= 1) {
      for (int i = 0; i < count; ++i) f(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &f;
      count_ = count;
      next_.store(0);
      pending_.store(n_ - 1);
      error_ = nullptr;
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    work();
    spinUntil([this] { return pending_.load() == 0; }, heldSpin() ? kHeld : kSpin);  // Note [Pool spin]
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [this] { return pending_.load() == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      const int i = next_.fetch_add(1);
      if (i >= count_) return;
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }
  void loop(unsigned long seen) {
    using Clock = std::chrono::steady_clock;
    auto budget = kSpin;  // Note [Pool spin]: adapts to the gaps between jobs
    auto ended = Clock::now();
    for (;;) {
      spinning_.fetch_add(1);
      const auto news = [&] { return stopping_.load() || gen_.load() != seen || sideCount_.load() > 0; };
      bool hot = spinForJob(news, budget);
      // A hand-off is run while still counted as spinning, so the caller that queued it, reading spinning_ right
      // after, leaves it to this worker instead of racing it for drainMu_ (Note [Hand-off to a spinning worker]).
      while (hot && sideCount_.load() > 0 && gen_.load() == seen && !stopping_.load()) {
        drainSide();
        hot = spinForJob(news, budget);
      }
      spinning_.fetch_sub(1);
      if (sideCount_.load() > 0) {  // Note [Hand-off to a spinning worker]: after leaving the spin, so none is missed
        drainSide();
        if (gen_.load() == seen && !stopping_.load()) continue;  // back to spinning for the next job
      }
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || gen_.load() != seen; });
        if (stop_) return;
        seen = gen_.load();
      }
      if (!hot) {
        const auto gap = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - ended);
        budget = gap < kSpinMax ? std::min(kSpinMax, 2 * gap) : kSpin;
      }
      work();
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // the device thread reads pending_ under m_ before it sleeps
        done_.notify_one();
      }
      ended = Clock::now();
    }
  }
  void start(int n) {
    n_ = n;
    oversubscribed_ = n > machineThreads();
    stop_ = false;
    stopping_.store(false);
    if (masks_.size() != static_cast<size_t>(n - 1)) masks_.clear();  // a placement for another count no longer applies
    ready_ = 0;
    seen_.assign(n - 1, {});
    for (int i = 1; i < n_; ++i)
      workers_.emplace_back([this, i, g = gen_.load()] {
        std::vector<int> cpus;
        try {
          if (!masks_.empty()) pinThread(masks_[i - 1]);  // Note [Thread placement]
          cpus = threadCpus();
        } catch (...) {
          cpus = threadCpus();  // unpinned: it computes the same, only where the OS puts it (the run reports the masks)
        }
        {
          std::lock_guard<std::mutex> lk(m_);
          seen_[i - 1] = std::move(cpus);
          ++ready_;
        }
        started_.notify_all();
        loop(g);
      });
  }
  void stop() {
    while (sideCount_.load() > 0) drainSide();  // whatever was handed off runs before the workers go
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      stopping_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    n_ = 1;
  }

  std::mutex m_;
  std::condition_variable cv_, done_, started_;
  std::vector<std::vector<int>> masks_;  // per worker; empty: inherited
  std::vector<std::vector<int>> seen_;   // each worker's mask as it started
  int ready_ = 0;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> next_{0};
  int count_ = 0;
  std::atomic<unsigned long> gen_{0};  // written under m_; read without it while spinning
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> held_{false};
  bool oversubscribed_ = false;  // more threads than hardware threads: no longer spins while held
  std::mutex sideMu_, drainMu_;
  std::deque<std::function<void()>> side_;
  std::atomic<int> sideCount_{0}, spinning_{0};
  int n_ = 1;
  bool stop_ = false;
  std::exception_ptr error_;
};

GemmThreads::GemmThreads(int n) : pool_(std::make_unique<Pool>(1)) { resize(n); }
GemmThreads::~GemmThreads() {
  if (tlsThreads == this) tlsThreads = nullptr;
}
int GemmThreads::size() const { return pool_->size(); }
void GemmThreads::resize(int n) {
  if (n < 1 || n > kMaxGemmThreads)
    throw std::invalid_argument("GEMM threads must be an integer in [1, " + std::to_string(kMaxGemmThreads) + "], got " +
                                std::to_string(n));
  if (n != pool_->size()) pool_->resize(n);
}
void GemmThreads::setWorkerCpus(std::vector<std::vector<int>> masks) {
  if (!masks.empty() && masks.size() != static_cast<size_t>(size() - 1))
    throw std::invalid_argument("GEMM worker CPUs: expected " + std::to_string(size() - 1) + " masks (one per worker), got " +
                                std::to_string(masks.size()));
  pool_->setWorkerCpus(std::move(masks));
}
std::vector<std::vector<int>> GemmThreads::workerCpus() const { return pool_->workerCpus(); }
void GemmThreads::hold(bool on) { pool_->hold(on); }
void GemmThreads::handOff(std::function<void()> f) { pool_->handOff(std::move(f)); }
bool GemmThreads::spinning() const { return pool_->spinning(); }
void GemmThreads::bind(GemmThreads* t) { tlsThreads = t; }
GemmThreads* GemmThreads::bound() { return tlsThreads; }
void GemmThreads::forEach(int count, const std::function<void(int)>& f) { pool_->forEach(count, f); }

}  // namespace tl
