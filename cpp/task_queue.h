// TaskQueue: tasks run in order by the one thread that serves the queue. A device's thread (registry.h) and each
// parameter-server channel's thread (ps/task_thread.h) serve one. Held by shared_ptr from the serving thread, so a
// thread detached by its owner's destructor (the last reference let go on that thread) never touches freed memory.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "idle_work.h"

namespace tl {

// Note [Spin for the next task]: a thread that sleeps on a condition variable takes a wake-up to get going again,
// and on the virtual machines we run on that wake-up is slow: a bare run of an empty program, awaited in a loop,
// took 80-110 us from JS and back with the device thread sleeping between runs, and 5-8 us with it spinning (2-core
// VM, 2026-11-30). A caller that awaits each call before it makes the next (a sequential step loop, an eval loop,
// a latency probe) queues its next task within about 100-200 us of the last completion, the JS thread's own time.
// So a device thread whose queue has run dry spins for up to kIdleSpinNs, watching a counter that every submit and
// stop() bump, before it waits on the condition variable. It yields as it spins: the JS thread it just woke is often
// queued on its own CPU (the scheduler wakes a thread near its waker). The policy its owner sets (Device::loop) lets
// it spin only when
//   - its last program had no collective: towers that work in step wake together, and one that spins while its
//     peers sleep only waits for them at the first barrier (2 towers, one 1 KB all-reduce per JS call: 192 us with
//     such spins, 90 us without);
//   - no helper of its own spins (a GEMM worker that took the completion, Note [Hand-off to a spinning worker]);
//   - the device threads awake in the process, itself included, leave a core for the JS thread. Spinning regardless,
//     the MNIST step's floor ratio with 2 GEMM threads on 2 cores fell (0.81, 0.72 against 0.86, 0.94 without).
// Nothing waits on the spin: a task queued during it is seen at once, and one queued after it by the condition
// variable, both under the queue's lock. The cost is at most kIdleSpinNs of one core after the last task of a burst.
class TaskQueue {
 public:
  using Task = std::function<void()>;
  using Done = std::function<void(std::exception_ptr)>;

  // Queues `task`; `done` runs on the serving thread after it, with its error (if any). False (nothing queued)
  // once stopped: the owner throws, naming itself.
  [[nodiscard]] bool submit(Task task, Done done) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return false;
      items_.emplace_back(std::move(task), std::move(done));
      events_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_one();
    return true;
  }

  // Whether tasks are queued that have not started (a hint: another thread may queue one at any time).
  bool hasWork() {
    std::lock_guard<std::mutex> lk(mu_);
    return !items_.empty();
  }

  // The serving thread's loop: runs tasks until stopped and drained. With `failAll` set (a thread that could not
  // start its work, e.g. a device that cannot bind), every task fails with it instead of running. What a task's
  // completion put off (Note [Wake-ups in idle time] in idle_work.h) runs after the next task, before that task's
  // completion, or before the queue waits for work, whichever comes first.
  void serve(std::exception_ptr failAll = nullptr) {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (items_.empty() && IdleWork::pendingHere()) {
        lk.unlock();
        IdleWork::runHere();
        lk.lock();
        continue;
      }
      if (items_.empty() && !stopping_ && idleSpin_ && idleSpin_()) {
        const uint64_t seen = events_.load(std::memory_order_acquire);
        lk.unlock();
        spinWhile(seen);
        lk.lock();
      }
      if (awake_) awake_->fetch_sub(1, std::memory_order_relaxed);
      cv_.wait(lk, [&] { return stopping_ || !items_.empty(); });
      if (awake_) awake_->fetch_add(1, std::memory_order_relaxed);
      if (items_.empty()) return;  // stopping and drained
      auto item = std::move(items_.front());
      items_.pop_front();
      lk.unlock();
      std::exception_ptr err = failAll;
      if (!err) {
        try {
          item.first();
        } catch (...) {
          err = std::current_exception();
        }
      }
      IdleWork::runHere();
      item.second(err);
      item = {};  // what the task held goes now, while the queue is certainly alive
      lk.lock();
    }
  }

  // Whether the serving thread spins for its next task when the queue runs dry (Note [Spin for the next task]),
  // asked each time; and a count of awake threads that this one leaves while it waits on the condition variable
  // (it counts itself awake otherwise). Set before serve().
  void setIdleSpin(std::function<bool()> policy, std::atomic<int>* awake) {
    idleSpin_ = std::move(policy);
    awake_ = awake;
  }

  // Stops after what is queued; idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
      events_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Task, Done>> items_;
  bool stopping_ = false;
  std::atomic<uint64_t> events_{0};  // submits and stop(), for the spin to watch without the lock
  std::function<bool()> idleSpin_;
  std::atomic<int>* awake_ = nullptr;

  static constexpr int64_t kIdleSpinNs = 200'000;

  void spinWhile(uint64_t seen) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kIdleSpinNs);
    for (int i = 0; events_.load(std::memory_order_acquire) == seen; ++i) {
      std::this_thread::yield();
      if ((i & 7) == 7 && std::chrono::steady_clock::now() >= until) return;
    }
  }
};

}  // namespace tl
