// IdleWork: work a thread puts off until it would wait anyway (Note [Wake-ups in idle time]).
#pragma once
#include <deque>
#include <functional>
#include <utility>

namespace tl {

// Note [Wake-ups in idle time]: a task's completion wakes the JS thread that waits for it (napi/async.cc: an eventfd
// write). On a host where every core runs a device thread (2 towers on 2 cores: no GEMM worker spins to take the
// write, Note [Hand-off to a spinning worker]), the device thread makes it between one step program and the next one,
// already queued (Note [Pipelined steps]), on the critical path; and the woken JS thread, placed on the waker's CPU,
// preempts that device thread while it computes, so its peers wait for it at the next barrier. So when the device
// thread has more work queued and no helper is ready, Device::settle puts the completion off (IdleWork::defer), and
// the thread does it at the first moment it would wait anyway:
//   - at a barrier it is not the last to reach (SpinBarrier::arrive): it would spin or sleep there, and the JS thread
//     it wakes can take its core meanwhile (the barrier's reported wait, the tower's idle time, includes it);
//   - else after its next task, before that task's own completion (TaskQueue::serve), so a completion is never put
//     off by more than one task, and completions still run in the order their tasks ran;
//   - and before its queue goes idle (TaskQueue::serve), so nothing is ever left behind.
// A completion that is put off settles its promise later (at most one step program later); pipelined steps keep the
// device busy meanwhile, and a caller that waits for a reply before it queues more work (a drain, a control call)
// finds the queue empty, so its completion runs at once. On the bench VM, 2 towers: the median gap between two step
// programs went from 190 to 7 us (docs/benchmarks.md). Put-off work runs on the thread that put it off, in order;
// it must not throw (a completion only queues a call on a thread-safe function).
class IdleWork {
 public:
  static void defer(std::function<void()> f) { list().push_back(std::move(f)); }
  static bool pending() { return !list().empty(); }
  // Runs what this thread put off, oldest first (including anything put off meanwhile).
  static void run() {
    auto& l = list();
    while (!l.empty()) {
      std::function<void()> f = std::move(l.front());
      l.pop_front();
      f();
    }
  }

 private:
  static std::deque<std::function<void()>>& list() {
    thread_local std::deque<std::function<void()>> l;
    return l;
  }
};

}  // namespace tl
