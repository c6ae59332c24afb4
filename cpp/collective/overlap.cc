// The bucket runner (Note [Overlapped all-reduce]) and the compile/run/abort of the '@bucket' and '@wait' ops.
#include "overlap.h"

#include <chrono>

#include "../backend.h"
#include "../check.h"
#include "../program.h"
#include "../registry.h"
#include "communicator.h"

namespace tl {

using Clock = std::chrono::steady_clock;

BucketRunner::~BucketRunner() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    failQueued("the step program was freed");
    if (running_) running_->abort("the step program was freed");  // so the join below does not wait for a deadline
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();  // a running bucket ends at its own deadline at the latest
}

void BucketRunner::start(std::shared_ptr<Communicator> comm, int rank) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  queue_.emplace_back(std::move(comm), rank);
  cv_.notify_all();
}

void BucketRunner::failQueued(const std::string& why) {
  for (auto& [c, r] : queue_) c->abort(why);
  queue_.clear();
}

void BucketRunner::loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ with nothing left
    auto [comm, rank] = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    running_ = comm;
    lk.unlock();
    std::exception_ptr err;
    std::string why;
    try {
      comm->execute(rank);
    } catch (const std::exception& e) {
      err = std::current_exception();
      why = std::string("bucket all-reduce on ") + device_ + " failed: " + e.what();
      comm->abort(why);  // the other local towers of this bucket stop at once (and the group, if it was inside)
    }
    lk.lock();
    busy_ = false;
    running_ = nullptr;
    ++finished_;
    if (err) {
      if (!error_) error_ = err;
      failQueued(why);  // later buckets never run: nobody waits for this tower in them
    }
    cv_.notify_all();
  }
}

void BucketRunner::wait(int64_t timeoutMs) {
  std::unique_lock<std::mutex> lk(mu_);
  uint64_t seen = finished_;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
  while (busy_ || !queue_.empty()) {
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && finished_ == seen && (busy_ || !queue_.empty())) {
      const std::string why = "no all-reduce bucket finished within " + std::to_string(timeoutMs) + " ms (" +
                              std::to_string(queue_.size() + (busy_ ? 1 : 0)) + " left)";
      failQueued("tower on " + device_ + ": " + why);
      TL_FAIL("all-reduce on " << device_ << ": " << why << "; a tower or process stalled? raise collectiveTimeoutMs if "
                                  "steps are legitimately this slow");
    }
    if (finished_ != seen) {
      seen = finished_;
      deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);  // progress restarts the deadline
    }
  }
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void BucketRunner::abort(const std::string& why, int64_t timeoutMs) {
  std::unique_lock<std::mutex> lk(mu_);
  failQueued(why);
  cv_.wait_until(lk, Clock::now() + std::chrono::milliseconds(timeoutMs), [&] { return !busy_; });
  error_ = nullptr;
}

OverlapOp compileOverlapOp(const std::shared_ptr<Device>& dev, const OpDesc& d, size_t i, std::shared_ptr<BucketRunner>& runner,
                           IntAttr numberAttr) {
  TL_CHECK_ARG(d.in.empty() && d.out.empty(), Type, "op #" << i << " (" << d.kernel << ") takes no buffers");
  if (!runner) runner = std::make_shared<BucketRunner>(dev->name());
  OverlapOp op;
  op.runner = runner;
  op.timeoutMs = numberAttr(d, i, "timeoutMs", 1, 2147483648.0);
  if (d.kernel == "@wait") return op;
  op.comm = Registry::get().comm(static_cast<uint32_t>(numberAttr(d, i, "comm", 0, 4294967296.0)));
  op.rank = static_cast<int>(numberAttr(d, i, "rank", 0, op.comm->size()));
  TL_CHECK_ARG(op.comm->involves(dev.get()), Range,
               "op #" << i << " (@bucket): communicator " << op.comm->id() << " does not include " << dev->name());
  return op;
}

void runOverlapOp(const OverlapOp& op, Backend& dev) {
  if (!op.comm) return op.runner->wait(op.timeoutMs);
  dev.sync();  // asynchronous backends: the bucket's gradients are written before another thread reads them
  op.runner->start(op.comm, op.rank);
}

void abortOverlapOps(const std::vector<const OverlapOp*>& ops, const std::string& why) {
  for (const OverlapOp* o : ops)
    if (o->comm) o->comm->abort(why);  // also the buckets this tower never started: its peers wait in them
  if (!ops.empty()) ops[0]->runner->abort(why, ops[0]->timeoutMs);
}

}  // namespace tl
