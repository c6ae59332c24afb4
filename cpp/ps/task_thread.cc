// TaskThread (task_thread.h): a thread serving a TaskQueue (../task_queue.h).
#include "task_thread.h"

#include "../check.h"

namespace tl {
namespace ps {

TaskThread::TaskThread() : q_(std::make_shared<TaskQueue>()) {
  thread_ = std::thread([q = q_] { q->serve(); });
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
  TL_CHECK(q_->submit(std::move(task), std::move(done)), "parameter-server channel is closed (the run ended or its link was released)");
}

void TaskThread::stop() { q_->stop(); }

}  // namespace ps
}  // namespace tl
