// The cross-process part of a collective: what a communicator's remote step calls (a process group implements it).
#pragma once
#include <cstdint>
#include <string>

namespace tl {

struct Buffer;

// Note [Remote steps]: a schedule step [2, slot, offset, length] makes the tower that runs it sum its
// [offset, offset+length) with the same range of the tower in the same slot of every other process of the group
// (src/scheduler/hierarchical.ts plans them after a local reduce-scatter, so each tower sums the shard it owns).
// The communicator runs it on the tower's device thread, in the phase where it appears; the result is the same
// bytes in every process (Note [Gloo ring all-reduce is bit-identical] in cpp/group/allreduce.cc), so the local
// all-gather that follows keeps every replica of the whole job bit-identical.
class RemoteReducer {
 public:
  virtual ~RemoteReducer() = default;
  // The number of slots (towers per process) whose contexts this group connected.
  virtual int slots() const = 0;
  // Sums [offset, offset+length) of `buf` (f32) over all processes on `slot`'s context; blocks the calling device
  // thread until done or until the group's deadline; throws a tl::Error naming the rank, host and op on failure.
  virtual void allReduce(int slot, Buffer& buf, int64_t offset, int64_t length) = 0;
  // Stops the group: every op in flight or later fails fast with `why` (the first cause wins).
  virtual void abort(const std::string& why) = 0;
  // "rank 1 of 3 (run 'x')", for messages.
  virtual std::string describe() const = 0;
};

}  // namespace tl
