// The parameter server of the asynchronous mode: the master weights, the optimizer state and the EMA on the server's
// own device, changed only by its apply program, one push at a time (Note [Parameter server]).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "../program.h"
#include "../registry.h"

namespace tl {
namespace ps {

// Note [Parameter server]: the server is a tower without a data set on a device of its own (src/async/server.ts
// builds it): its weight arena holds the master weights, its slots and EMA the optimizer state, its gradient arena
// receives one push at a time, and its apply program is the synchronous mode's update (Note [Fused parameter tail]
// in src/model/passes.ts) split at its guard: the tower that computed the gradient ran the first pass (L2, the
// global norm), the push carries that norm, and apply guards on it ('@guard') and runs the second (clipping, the
// optimizer, the EMA) on its device (Note [Global norm across shards] in src/async/server.ts). Every push and every snapshot is a task on the server's device thread, so pushes are applied one at a
// time in the order they reach its queue and a snapshot never sees half an update. A pull copies the master
// weights into a tower's weight arena on the tower's device thread (Note [Transports]: the destination's thread)
// under a read lock that apply holds for writing, so a pull never sees a torn update either.
//
// Versions and clocks (Note [Staleness]): the version counts the pushes the server has taken (an applied update,
// or one the non-finite guard skipped, as a skipped step counts in the synchronous mode); the learning rate of a
// push is the schedule's at the version it lands on. Each tower's clock counts its own pushes. A pull records the
// version it copied and the smallest clock of the live towers; its push then reports
//   lag        = pushes taken between the pull and this push (what the gradient was computed against), and
//   staleness  = the tower's clock minus that smallest clock (how many rounds ahead of the slowest it ran),
// which the coordinator's gate bounds by maxStaleness (src/async/gate.ts). The optional staleness-aware rate
// divides the learning rate by 1 + lag.
struct ServerConfig {
  std::shared_ptr<Device> device;
  std::shared_ptr<Buffer> weights, grads, hyper, normSq, regLoss;  // all on `device`
  std::shared_ptr<Program> apply;                                  // compiled on `device`
  std::shared_ptr<Buffer> normSqIn;  // 1 f32: the push's global squared norm, which apply guards on and clips by
  int towers = 1;
  std::vector<float> lr;  // the learning rate per version (the schedule as data); the last entry holds after it
  bool stalenessLr = false;
  uint64_t version = 0;  // a resumed run starts at its checkpoint's version
};

struct Pulled {
  uint64_t version = 0;
  int64_t minClock = 0;
  int64_t clock = 0;  // the tower's own clock: clock - minClock is the staleness its push will have
  double startMs = 0, endMs = 0;
};

struct Applied {
  uint64_t version = 0;  // after this push
  int64_t clock = 0;     // the tower's, after this push
  int64_t lag = 0, staleness = 0;
  float lr = 0;
  double normSq = 0, regLoss = 0;
  bool skipped = false;  // the non-finite guard stopped the update
  double startMs = 0, endMs = 0;
};

class ParameterServer {
 public:
  ParameterServer(uint32_t id, ServerConfig c);
  uint32_t id() const { return id_; }
  uint64_t ownerEnv = 0;
  Device& device() { return *c_.device; }
  const std::shared_ptr<Device>& devicePtr() const { return c_.device; }
  int64_t length() const { return c_.weights->numel; }

  // On dst's device thread: the master weights into dst (a tower's weight arena) under the read lock.
  Pulled pull(int rank, Buffer& dst);
  // On the server's device thread: the master weights into host memory (a remote pull).
  Pulled pullToHost(int rank, float* host, int64_t offset, int64_t length);
  // On the server's device thread: a push whose gradient is in src (a tower's gradient arena), or in host memory
  // (a remote push, `length` elements for [offset, offset+length) of the arena; the rest of the arena is zero).
  // normSq: the gradient's global squared norm, which its tower computed (Note [Global norm across shards] in
  // src/async/server.ts).
  Applied push(int rank, Buffer& src, float normSq);
  Applied pushFromHost(int rank, const float* host, int64_t offset, int64_t length, float normSq);

  void drop(int rank);  // a dropped tower no longer holds the smallest clock back
  struct Info {
    uint64_t version;
    std::vector<int64_t> clocks;
    std::vector<bool> alive;
  };
  Info info();
  // On the server's device thread: copies of `bufs` (the state a checkpoint holds) and the version they belong to.
  uint64_t snapshot(const std::vector<std::shared_ptr<Buffer>>& bufs, std::vector<std::vector<float>>& out);

 private:
  void checkRank(int rank, const char* op) const;
  Pulled recordPull(int rank);
  Applied applyLocked(int rank, float normSq);  // the apply program on grads_ (server thread, weights write-locked)
  uint32_t id_;
  ServerConfig c_;
  std::shared_mutex weightsMu_;  // apply writes the master weights; local pulls read them
  std::mutex stateMu_;           // version, clocks, alive, pulled
  uint64_t version_;
  std::vector<int64_t> clocks_;
  std::vector<bool> alive_;
  std::vector<Pulled> pulled_;
};

}  // namespace ps
}  // namespace tl
