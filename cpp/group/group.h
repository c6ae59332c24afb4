// Process groups: the processes of one multi-process run, their rendezvous, and the collectives among them.
// This header has no Gloo types, so the bindings compile in every build (Note [Optional Gloo]).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../collective/remote.h"

namespace tl {
namespace group {

// Note [Optional Gloo]: the addon links Gloo (Debian's libgloo-dev) when CMake finds it and TOWERLINE_GLOO is ON
// (the default); cpp/group/*.cc then implement process groups on it and TL_HAVE_GLOO is defined. Without it only
// unavailable.cc is built: support() says why, and creating a group throws that reason, so a build without Gloo
// still trains on one process and says how to enable more (src/group/support.ts words the advice).

// What createGroup is given (src/group/options.ts validates it first; the native side checks again).
struct GroupOptions {
  int rank = 0, size = 1;           // global rank and world size
  int localRank = 0, localSize = 1;  // this process among those on its machine (informational here)
  int slots = 1;                    // towers per process: one Gloo context per slot (Note [Process group contexts])
  std::string runId;                // keys every store entry, so two runs never mix
  std::string rdzv;                 // file:///shared/dir or redis://host:port
  std::string address = "127.0.0.1";  // what the TCP transport binds; ignored when iface is set
  std::string iface;                // bind this network interface's address instead
  std::string hostname;             // published for messages ("rank 1 on host <hostname> (<address>)")
  std::vector<std::string> proofs;  // proofs[q]: the run token's proof for rank q (Note [Run token])
  int64_t timeoutMs = 30000;        // default deadline of every collective
  int64_t rendezvousTimeoutMs = 30000;
};

// One rank as it published itself at rendezvous (cpp/group/record.h).
struct PeerInfo {
  int rank = 0, localRank = 0, localSize = 1, slots = 1, size = 1;
  std::string hostname, address;
  int64_t pid = 0;
  std::string proof, nonce;
  // "rank 2 on host box-a (10.0.0.2)"
  std::string label() const;
};

class ProcessGroup : public RemoteReducer {
 public:
  virtual const GroupOptions& options() const = 0;
  virtual const std::vector<PeerInfo>& peers() const = 0;
  // Control-context collectives of small byte blobs, each with a deadline (<= 0: the group's default).
  virtual void barrier(int64_t timeoutMs) = 0;
  virtual std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t>& mine, int64_t timeoutMs) = 0;
  virtual std::vector<uint8_t> broadcast(const std::vector<uint8_t>& mine, int root, int64_t timeoutMs) = 0;
  // Copies [offset, offset+length) of `buf` (f32) on process `root` to the same range of `buf` on every other process,
  // on `slot`'s context and the calling device thread, host staged like allReduce (the start-up weights: tower 0 of
  // rank 0 to tower 0 of every rank). Bytes are copied, never summed, so every process ends with root's bits.
  virtual void broadcastBuffer(int slot, Buffer& buf, int64_t offset, int64_t length, int root) = 0;
  // The first cause of failure, empty while the group is healthy.
  virtual std::string abortedWith() const = 0;
  // Closes every connection; returns at once and never throws. Later ops fail naming the close.
  virtual void close() = 0;
};

// Rendezvous (blocking up to rendezvousTimeoutMs) and connection of every context; throws a tl::Error saying what
// is missing or wrong. Without Gloo, throws the reason support() gives.
std::shared_ptr<ProcessGroup> createProcessGroup(const GroupOptions& opts);

// Whether this build has process groups, and what it has: {available, reason, gloo, stores, transports}.
struct Support {
  bool available = false;
  std::string reason;  // why not, when not available
  std::string glooVersion;
  std::vector<std::string> stores, transports;
};
Support support();

}  // namespace group
}  // namespace tl
