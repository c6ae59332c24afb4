// A device's GEMM threads (Note [GEMM threads] in gemm.cc): a small pool whose threads only decide who computes
// which slab of a product, never how it is cut, and the calling thread's binding.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
constexpr std::chrono::microseconds kSpin{50}, kSpinMax{400};

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
    spinUntil([this] { return pending_.load() == 0; });  // Note [Pool spin]
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
      const bool hot = spinUntil([&] { return stopping_.load() || gen_.load() != seen; }, budget);
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
    stop_ = false;
    stopping_.store(false);
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this, g = gen_.load()] { loop(g); });
  }
  void stop() {
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
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> next_{0};
  int count_ = 0;
  std::atomic<unsigned long> gen_{0};  // written under m_; read without it while spinning
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
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
void GemmThreads::bind(GemmThreads* t) { tlsThreads = t; }
GemmThreads* GemmThreads::bound() { return tlsThreads; }
void GemmThreads::forEach(int count, const std::function<void(int)>& f) { pool_->forEach(count, f); }

}  // namespace tl
