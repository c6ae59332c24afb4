// A communicator: n towers' flat buffers, a schedule of reduce/copy steps in phases, and the executor that runs it.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "barrier.h"
#include "exec_plan.h"
#include "remote.h"
#include "schedule.h"
#include "transport.h"

namespace tl {

// Note [Collective executor]: each tower's device thread calls execute(rank) from its step program. Between
// phases the ranks meet at a barrier with a deadline (Note [Spinning barrier]); a rank that fails, or a device that
// closes, aborts the communicator so every other rank stops waiting at once with that cause instead of hanging.
// A schedule runs as its execution plan (Note [Fused steps]), made once when the schedule is installed.
// What one collective costs a rank besides its reduce/copy steps, so that a small one (1 KB between 2 towers: one
// fused phase, two barriers) costs about a microsecond: one barrier per phase plus the entry barrier (Note
// [Spinning barrier]); two clock reads for the rank's total time plus two per barrier it waits at; the schedule
// in force read as a plain pointer (no reference count: Note [Schedule changes] says why it cannot change under
// the rank); no lock, unless the plan has remote steps (then one, to take the process group); no allocation (a
// fused step's target buffers are listed when the plan is installed); and stores only to the rank's own cache
// line (its in-collective flag and stats), so the ranks do not bounce lines between their cores.
//
// Note [Schedule changes]: setSchedule may be called at any time, from any thread. It validates the schedule and
// leaves it pending; the rank that completes the entry barrier of the next collective (the first barrier, which
// every rank reaches only after it has left the previous collective) installs it, and every rank takes the
// schedule it runs right after that barrier. So all ranks of one collective run the same schedule, and a change
// never lands under a running collective. (A guard on the barrier count cannot tell: the barrier resets it to 0
// between phases.) The installed schedule is read without a lock: it changes only inside the entry barrier, before
// the generation that releases the ranks is published, and every rank has read it before it arrives at the next
// entry barrier.
class Communicator {
 public:
  Communicator(uint32_t id, std::vector<std::shared_ptr<Buffer>> buffers, Schedule schedule, int64_t timeoutMs);
  uint32_t id() const { return id_; }
  uint64_t ownerEnv = 0;
  int size() const { return static_cast<int>(buffers_.size()); }
  int64_t length() const { return buffers_[0]->numel; }
  void setSchedule(Schedule s);  // validated now; runs from the next collective on (Note [Schedule changes])
  void execute(int rank);
  // Stops the collective in flight and every later one; when a tower is inside one, also stops the process group
  // (the other processes wait in its remote steps). Releasing an idle communicator leaves the group alone.
  void abort(const std::string& why);
  // The process group whose slot contexts run this communicator's remote steps (Note [Remote steps]); set once,
  // before the first collective that has them.
  void setRemote(std::shared_ptr<RemoteReducer> remote);
  bool involves(const Device* d) const;
  struct RankStats { double totalMs = 0, waitMs = 0; };
  RankStats stats(int rank);
  std::string transportOf(int dst, int src) const { return transports_[dst][src]->name(); }
  // Phases and fused steps of the schedule in force (for tests and benchmarks; under mu_, which the entry barrier's
  // install also holds, so a read from another thread never races it).
  int phasesInForce() {
    std::lock_guard<std::mutex> lk(mu_);
    return static_cast<int>(current_->plan.phases.size());
  }
  int fusedInForce() {
    std::lock_guard<std::mutex> lk(mu_);
    return current_->plan.fused;
  }

 private:
  struct Installed {
    Schedule schedule;
    ExecPlan plan;
  };
  std::shared_ptr<const Installed> install(Schedule s);
  // `running`: the schedule of the collective, or nullptr at its entry barrier (whose completing rank installs a
  // pending schedule).
  // Returns the ns this rank waited.
  int64_t barrier(int rank, size_t phase, const Installed* running);
  void runStep(int rank, const ExecStep& e, RemoteReducer* remote);
  void remoteStep(int rank, const CollStep& s, RemoteReducer* remote);
  uint32_t id_;
  std::vector<std::shared_ptr<Buffer>> buffers_;
  std::vector<std::vector<const Transport*>> transports_;
  std::atomic<int64_t> timeoutMs_;
  SpinBarrier barrier_;
  std::mutex mu_;                               // guards pending_, remote_ and writes of current_
  std::shared_ptr<const Installed> current_;    // what the collective now running (or the next) uses
  std::shared_ptr<const Installed> pending_;    // set by setSchedule, installed at the next entry barrier
  std::atomic<bool> hasPending_{false};
  // Per rank, on its own cache line: whether it is in execute(), and its last collective's times.
  struct alignas(64) RankSlot { std::atomic<bool> inside{false}; std::atomic<double> totalMs{0}, waitMs{0}; };
  std::vector<RankSlot> slots_;
  std::shared_ptr<RemoteReducer> remote_;
  bool anyInside() const;
};

}  // namespace tl
