// A communicator: n towers' flat buffers, a schedule of reduce/copy steps in phases, and the executor that runs it.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "transport.h"

namespace tl {

struct CollStep {
  enum Kind : int { Reduce = 0, Copy = 1 } kind;
  int peer;        // the rank whose buffer is read
  int64_t offset;  // elements
  int64_t length;  // elements
};

// phases[p][rank] is what `rank` does in phase p; all ranks finish phase p before any starts p + 1.
struct Schedule {
  std::string name;
  std::vector<std::vector<std::vector<CollStep>>> phases;
};

// Note [Collective executor]: each tower's device thread calls execute(rank) from its step program. Between
// phases the ranks meet at a barrier with a deadline; a rank that fails, or a device that closes, aborts the
// communicator so every other rank stops waiting at once with that cause instead of hanging.
class Communicator {
 public:
  Communicator(uint32_t id, std::vector<std::shared_ptr<Buffer>> buffers, Schedule schedule, int64_t timeoutMs);
  uint32_t id() const { return id_; }
  uint64_t ownerEnv = 0;
  int size() const { return static_cast<int>(buffers_.size()); }
  void setSchedule(Schedule s);  // between collectives only
  void execute(int rank);
  void abort(const std::string& why);
  bool involves(const Device* d) const;
  struct RankStats { double totalMs = 0, waitMs = 0; };
  RankStats stats(int rank);
  std::string transportOf(int dst, int src) const { return transports_[dst][src]->name(); }
  // Fault injection (tests): the next copy step of `rank` flips one bit of what it received.
  void injectBitFlip(int rank) { flipRank_ = rank; }

 private:
  void barrier(int rank, size_t phase);
  uint32_t id_;
  std::vector<std::shared_ptr<Buffer>> buffers_;
  std::vector<std::vector<const Transport*>> transports_;
  Schedule schedule_;
  std::atomic<int64_t> timeoutMs_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::string aborted_;
  std::vector<RankStats> stats_;
  std::atomic<int> flipRank_{-1};
};

// Validates a schedule against the buffers (peers, ranges, no rank writing what another reads in one phase).
void validateSchedule(const Schedule& s, int ranks, int64_t length);

}  // namespace tl
