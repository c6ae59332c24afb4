// How a communicator runs a validated schedule: the schedule's steps, with reduce-then-copy pairs fused where the
// transports allow it, and the phases left empty by that dropped together with their barriers.
#pragma once
#include <functional>
#include <vector>

#include "schedule.h"

namespace tl {

// Note [Fused steps]: in a schedule, a reduced chunk reaches the other towers by copies that the receivers run in a
// later phase (Note [Schedules]): the receiver reads the owner's chunk from memory again. Where a tower's reduce
// step in phase p is the last write to its chunk in that phase, and another tower copies exactly that chunk from it
// in phase p + 1, the reducing tower can write each sum into the receiver's buffer as it computes it (one pass
// over the data instead of two), and the receiver's copy is dropped. That is allowed when the transports let the
// reducing tower's thread write the receiver's memory (host memory: CPU towers in one process), and when nothing
// else reads or writes the receiver's chunk in phase p (so moving the write one phase earlier is invisible; the
// reducing tower's own earlier steps in phase p ran before on its thread, so they do not count). The
// bytes are the ones the copy would have written, so replicas stay bit-identical and the schedule, as data and as
// validated, is unchanged. A phase whose steps were all dropped is dropped with its barrier: ring on 2 towers
// becomes one phase (each tower sums half of the buffer into both), ring on n towers saves one all-gather phase,
// and naive on n towers becomes one phase (tower 0 sums every tower's buffer, then pushes the sum into all of
// them: two barriers in all, the small-message path for any number of towers).
struct Buffer;

struct ExecStep {
  CollStep step;
  std::vector<int> pushTo;  // a fused reduce: the towers whose buffers also receive the sums
  std::vector<Buffer*> pushBuffers;  // their buffers, filled by the communicator that installs the plan
};

struct ExecPlan {
  // phases[p][rank]: what `rank` runs in phase p; a barrier follows every phase.
  std::vector<std::vector<std::vector<ExecStep>>> phases;
  int fused = 0;  // copy steps replaced by pushes
  bool remote = false;  // some step is a remote step (Note [Remote steps])
};

// `canPush(r, peer, q)`: whether tower r's thread, reducing tower peer's chunk into its own, may also write tower
// q's buffer. The schedule must have passed validateSchedule.
ExecPlan planExecution(const Schedule& s, int ranks, const std::function<bool(int r, int peer, int q)>& canPush);

}  // namespace tl
