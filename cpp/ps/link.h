// The parameter-server link across processes: point-to-point messages between the processes of a run, on a Gloo
// context of their own (Note [Parameter-server link]). No Gloo types here, so the bindings build without Gloo.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace tl {
namespace ps {

// Note [Parameter-server link]: across processes the server drives its towers (src/async/remote.ts): it sends a
// tower its work (a header with the batch and the version, then the master weights), the worker computes the
// gradient and sends it back (a header with the loss and timings, then the gradient), and the server applies it.
// Every message travels on a tag of its own per (tower slot, direction, header or data), so a tower's messages never
// meet another's. The link is one Gloo context over every process of the run (a full mesh, connected after the
// process group's rendezvous checked the run token, through the same store), separate from the group's contexts.
// Every wait has a deadline or can be aborted: the server never lets Gloo time out (a Gloo timeout closes every
// connection of its context, and the server must outlive a worker), it aborts the wait of a tower that missed its
// deadline instead and parks that tower's buffers, so late bytes land there and the connection stays usable. A
// worker waits with a Gloo deadline: if its server neither answers nor closes the connection in time, the worker
// is done anyway. A closed connection fails the waits on it at once: a dead worker is noticed by the first wait on
// it, a dead server by every worker.
struct LinkOptions {
  int rank = 0, size = 1;
  std::string runId, rdzv;
  std::string address = "127.0.0.1";  // what the link's TCP device binds (loopback unless told otherwise)
  std::string iface;
  int64_t timeoutMs = 30000;  // connecting
};

class Link {
 public:
  virtual ~Link() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Block until the bytes went out / came in. timeoutMs > 0: fail after it (and the link is closed: fatal);
  // timeoutMs <= 0: wait until the peer answers, fails, or abort(peer, tag). Errors name the peer's rank.
  virtual void send(int peer, uint64_t tag, const void* data, size_t bytes, int64_t timeoutMs) = 0;
  virtual void recv(int peer, uint64_t tag, void* data, size_t bytes, int64_t timeoutMs) = 0;
  // Fails the wait on (peer, tag) now and every later one; bytes that still come for it are discarded.
  virtual void abort(int peer, uint64_t tag) = 0;
  // Closes every connection; later waits fail at once. Idempotent, never throws.
  virtual void close() = 0;
};

// Connects every process (blocking up to timeoutMs). Without Gloo, throws saying how to enable it.
std::shared_ptr<Link> connectLink(const LinkOptions& o);

}  // namespace ps
}  // namespace tl
