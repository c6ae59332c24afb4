// IdleWork: a device thread's work put off until it would wait anyway (Note [Wake-ups in idle time]).
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace tl {

// Note [Wake-ups in idle time]: a task's completion wakes the JS thread that waits for it (napi/async.cc: an eventfd
// write). On a host where every core runs a device thread (2 towers on 2 cores: no GEMM worker spins to take the
// write, Note [Hand-off to a spinning worker]), the device thread made it between one step program and the next one,
// already queued (Note [Pipelined steps]), on the critical path; and the woken JS thread, placed on the waker's CPU,
// preempted that device thread while it computed, so its peers waited for it at the next barrier. So when the device
// thread has more work queued and no helper is ready, Device::settle puts the completion off (IdleWork::defer), and
// it is done at the first of:
//   - a barrier the device thread is not the last to reach (SpinBarrier::arrive): it would spin or sleep there, and
//     the JS thread it wakes can take its core meanwhile (the barrier's reported wait, the tower's idle time,
//     includes it);
//   - the end of the device thread's next task, before that task's own completion (TaskQueue::serve);
//   - kLateMs after it was put off, by the process's reaper thread (a timer thread: it wakes every kLateMs while
//     anything is put off, and sleeps otherwise). A program that stalls before its first barrier (a hung kernel, an
//     armed 'stall' fault) therefore cannot hold the step before it: that step's reply still lands within kLateMs,
//     so a deadline names the step that really stalls (test/guards.test.ts's watchdog test), and no task that waits
//     on JS's reaction to an earlier reply can wait for more than kLateMs;
//   - and before the device's queue goes idle (TaskQueue::serve), a safety net.
// A put-off completion settles its promise later (by at most the next task or kLateMs); pipelined steps keep the
// device busy meanwhile, and a caller that waits for a reply before it queues more work (a drain, a control call, the
// asynchronous mode's loop) finds the queue empty, so its completion runs at once. Put-off work runs in the order it
// was put off, whichever thread runs it (one lock held while it pops and runs), and a completion that comes while
// anything is put off (or running) is put off behind it. It must not throw (a completion only queues a call on a
// thread-safe function). On the bench VM, 2 towers: the median gap between two step programs went from 190 to 7 us
// (docs/benchmarks.md).
class IdleWork : public std::enable_shared_from_this<IdleWork> {
 public:
  static constexpr int64_t kLateMs = 10;

  // Puts f off (the device thread).
  void defer(std::function<void()> f);
  // Whether anything is put off or running now.
  bool pending() const { return count_.load(std::memory_order_seq_cst) > 0; }
  // Runs everything put off, oldest first (any thread). With `olderThanNs` set: only what was put off before it.
  void run(int64_t olderThanNs = INT64_MAX);

  // The calling thread's device's put-off work (the device thread binds it as it starts, in Device's constructor); the
  // flush points call these.
  static void bindThread(std::shared_ptr<IdleWork> w);
  static bool pendingHere();
  static void runHere();

 private:
  std::mutex runMu_;   // held while popping and running: one order whichever thread runs
  std::mutex listMu_;  // the list itself (defer does not wait for a run)
  std::deque<std::pair<int64_t, std::function<void()>>> items_;
  std::atomic<int> count_{0};  // put off and not yet run (an item counts until it has run)
  std::atomic<bool> registered_{false};
};

}  // namespace tl
