// The process group on Gloo: its contexts, the guard every collective runs in, and the failure path.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gloo/context.h>
#include <gloo/transport/device.h>
#include <gloo/transport/unbound_buffer.h>

#include "group.h"
#include "store.h"

namespace tl {
namespace group {

// Note [Process group contexts]: one TCP device (bound to the given address or interface, loopback by default)
// carries 2 + slots Gloo contexts, each a full mesh of its own connections:
//   - slot s (one per local tower): tower s's remote all-reduces, on its device thread (allreduce.cc);
//   - control: barrier, broadcast and all-gather of small blobs (barrier.cc, broadcast.cc, allgather.cc);
//   - watch: never used for an op. A process that dies closes its sockets, so a watch connection that is closed
//     while its rank left no notice in the store means that process died (Note [Failure diagnosis]).
// A context runs one op at a time (slotMu_, controlMu_); in a run, slot s is used only by tower s's thread.
class GlooGroup final : public ProcessGroup, public std::enable_shared_from_this<GlooGroup> {
 public:
  static std::shared_ptr<GlooGroup> create(const GroupOptions& opts);
  ~GlooGroup() override;

  const GroupOptions& options() const override { return opts_; }
  const std::vector<PeerInfo>& peers() const override { return peers_; }
  int slots() const override { return opts_.slots; }
  std::string describe() const override;
  std::string abortedWith() const override;

  void allReduce(int slot, Buffer& buf, int64_t offset, int64_t length) override;  // allreduce.cc
  void barrier(int64_t timeoutMs) override;                                          // barrier.cc
  std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t>& mine, int64_t timeoutMs) override;  // allgather.cc
  std::vector<uint8_t> broadcast(const std::vector<uint8_t>& mine, int root, int64_t timeoutMs) override;      // broadcast.cc
  void broadcastBuffer(int slot, Buffer& buf, int64_t offset, int64_t length, int root) override;                // broadcast.cc

  void abort(const std::string& why) override;
  void close() override;

 private:
  explicit GlooGroup(const GroupOptions& opts);
  void connect();  // rendezvous and every context (connect.cc)

  // Runs one op's body (Gloo calls); a failure goes through fail(). Throws at once when the group is stopped.
  void guard(const std::string& op, int64_t timeoutMs, const std::function<void()>& body);
  std::chrono::milliseconds deadline(int64_t timeoutMs) const;
  // The checks every op on a slot's buffer range makes first (allreduce.cc): slot, dtype, range, not stopped.
  void checkSlotRange(const std::string& op, int slot, const Buffer& buf, int64_t offset, int64_t length) const;
  [[noreturn]] void fail(const std::string& op, const std::exception& e, int64_t timeoutMs);

  // Note [Failure diagnosis] (failure.cc): the cause, and the rank that reported it when adopted from another.
  struct Verdict {
    std::string cause;
    int reportedBy = -1;
  };
  Verdict diagnose(const std::string& op, const std::string& what, bool timedOut, int64_t timeoutMs);
  std::vector<int> probeClosed();  // ranks whose watch connection is closed
  void notice(const char* kind, const std::string& text);  // best effort: "seen" or "down", each written once
  bool hasNotice(int rank);
  std::string verdictOf(int rank);  // rank's "down" notice, or empty
  void stop(const std::string& cause);  // records the first cause, posts it, closes every connection
  std::string stopped() const;         // the error of an op on a stopped group

  GroupOptions opts_;
  std::vector<PeerInfo> peers_;
  std::unique_ptr<RunStore> store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> watch_, control_;
  std::vector<std::shared_ptr<gloo::Context>> slotContexts_;
  std::vector<std::vector<float>> staging_;  // per slot: the host copy of the shard being all-reduced
  std::vector<std::unique_ptr<std::mutex>> slotMu_;  // one op per slot context at a time, whoever calls
  char probeByte_ = 0;
  std::unique_ptr<gloo::transport::UnboundBuffer> probe_;

  std::mutex controlMu_;  // one control op at a time
  std::mutex failMu_;     // one diagnosis at a time
  mutable std::mutex stateMu_;
  std::string firstCause_;
  bool postedSeen_ = false, postedDown_ = false;
  std::atomic<bool> stopped_{false};
};

}  // namespace group
}  // namespace tl
