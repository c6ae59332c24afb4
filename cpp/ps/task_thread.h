// A thread that runs queued tasks in order: one per parameter-server channel (a tower's traffic with a peer), so a
// channel may block on the network without holding up a device thread or Node's thread pool.
#pragma once
#include <exception>
#include <functional>
#include <memory>
#include <thread>

#include "../task_queue.h"

namespace tl {
namespace ps {

class TaskThread {
 public:
  TaskThread();
  // Stops after what is queued; joins, or detaches when the last owner lets go on the thread itself (the queue
  // lives as long as the thread does).
  ~TaskThread();
  // Queues `task`; `done` runs on this thread after it, with its error (if any). Throws once stopped.
  void submit(std::function<void()> task, std::function<void(std::exception_ptr)> done);
  void stop();

 private:
  std::shared_ptr<TaskQueue> q_;
  std::thread thread_;
};

}  // namespace ps
}  // namespace tl
