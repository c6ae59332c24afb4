// TaskQueue: tasks run in order by the one thread that serves the queue. A device's thread (registry.h) and each
// parameter-server channel's thread (ps/task_thread.h) serve one. Held by shared_ptr from the serving thread, so a
// thread detached by its owner's destructor (the last reference let go on that thread) never touches freed memory.
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>

#include "idle_work.h"

namespace tl {

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
      cv_.wait(lk, [&] { return stopping_ || !items_.empty(); });
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

  // Stops after what is queued; idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Task, Done>> items_;
  bool stopping_ = false;
};

}  // namespace tl
