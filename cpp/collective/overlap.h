// Overlapping the gradient all-reduce with backward: bucket collectives started on a helper thread ('@bucket') and
// the wait for all of them ('@wait'), two special ops of a step program (Note [Special ops] in program.h).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tl {

class Backend;
class Communicator;
class Device;
struct OpDesc;

// Note [Overlapped all-reduce]: with overlap on, the gradient arena is cut into buckets (a pure function of the
// parameter list: src/scheduler/buckets.ts), and each bucket has its own communicator over views of every local
// tower's gradient arena, with its own schedule, validated like any other (Note [One schedule validator]). The step
// program starts bucket k with a '@bucket' op placed right after the last backward op that touches a gradient of
// the bucket (after that bucket's local norms and its 'gradient'/'reduce' fault points: Note [Fault points]); the
// op hands the bucket's collective to the tower's BucketRunner, one thread that runs the started buckets in
// program order, so every tower of every process runs the buckets, and their remote steps on each slot's Gloo
// context, in the same order. The device thread goes on with backward (the buckets' ranges are disjoint and
// backward never touches a finished bucket again). '@wait' blocks until every started bucket is done, before
// anything reads the reduced gradient (the global norm, the '@guard', the update); its deadline restarts at each
// finished bucket, so it fires only when no bucket progresses for timeoutMs. A bucket that fails aborts itself and
// every bucket queued after it (so the other local towers stop at once, and a remote failure stops the group), and
// '@wait' rethrows its error, naming the rank or tower; a tower whose step fails aborts every bucket of its program.
class BucketRunner {
 public:
  explicit BucketRunner(std::string device) : device_(std::move(device)) {}
  ~BucketRunner();
  // Queues `comm`'s collective as `rank` (the device thread, after syncing the device).
  void start(std::shared_ptr<Communicator> comm, int rank);
  // Blocks until every queued bucket finished; rethrows the first failure. Throws if no bucket finished for timeoutMs.
  void wait(int64_t timeoutMs);
  // Aborts the running and queued buckets with `why`, waits (at most timeoutMs) for the thread to go idle, and
  // forgets the failure, so the next run starts clean.
  void abort(const std::string& why, int64_t timeoutMs);

 private:
  void loop();
  void failQueued(const std::string& why);  // with mu_ held
  std::string device_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<Communicator>, int>> queue_;
  std::shared_ptr<Communicator> running_;  // the bucket the thread runs now (null when idle)
  bool busy_ = false;
  bool stop_ = false;
  std::exception_ptr error_;
  uint64_t finished_ = 0;
  std::thread thread_;
};

// One '@bucket' (comm set) or '@wait' (comm null) op; the ops of one program share its runner.
struct OverlapOp {
  std::shared_ptr<BucketRunner> runner;
  std::shared_ptr<Communicator> comm;
  int rank = 0;
  int64_t timeoutMs = 0;
};

// '@bucket' attrs {comm, rank, timeoutMs}; '@wait' attrs {timeoutMs}. `runner` is created by the first such op of
// a program and shared by the rest.
// `intAttr(d, i, name, lo, hi)` reads an integer attribute in [lo, hi) or throws naming the op (program.cc's).
using IntAttr = int (*)(const OpDesc&, size_t, const char*, double, double);
OverlapOp compileOverlapOp(const std::shared_ptr<Device>& dev, const OpDesc& d, size_t i, std::shared_ptr<BucketRunner>& runner,
                           IntAttr intAttr);
void runOverlapOp(const OverlapOp& op, Backend& dev);
// After a failed run: aborts every bucket communicator of the program's ops and its runner.
void abortOverlapOps(const std::vector<const OverlapOp*>& ops, const std::string& why);

}  // namespace tl
