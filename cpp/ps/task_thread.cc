// TaskThread (task_thread.h).
#include "task_thread.h"

#include <condition_variable>
#include <deque>
#include <mutex>

#include "../check.h"

namespace tl {
namespace ps {

struct TaskThread::Queue {
  using Item = std::pair<std::function<void()>, std::function<void(std::exception_ptr)>>;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Item> items;
  bool stopping = false;

  void run() {
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stopping || !items.empty(); });
      if (items.empty()) return;
      Item item = std::move(items.front());
      items.pop_front();
      lk.unlock();
      std::exception_ptr err;
      try {
        item.first();
      } catch (...) {
        err = std::current_exception();
      }
      item.second(err);
      item = Item();  // what the task held goes now, while this queue is certainly alive
      lk.lock();
    }
  }
};

TaskThread::TaskThread() : q_(std::make_shared<Queue>()) {
  thread_ = std::thread([q = q_] { q->run(); });
}

TaskThread::~TaskThread() {
  stop();
  if (!thread_.joinable()) return;
  if (std::this_thread::get_id() == thread_.get_id())
    thread_.detach();
  else
    thread_.join();
}

void TaskThread::submit(std::function<void()> task, std::function<void(std::exception_ptr)> done) {
  {
    std::lock_guard<std::mutex> lk(q_->mu);
    TL_CHECK(!q_->stopping, "parameter-server channel is closed (the run ended or its link was released)");
    q_->items.emplace_back(std::move(task), std::move(done));
  }
  q_->cv.notify_one();
}

void TaskThread::stop() {
  {
    std::lock_guard<std::mutex> lk(q_->mu);
    q_->stopping = true;
  }
  q_->cv.notify_all();
}

}  // namespace ps
}  // namespace tl
