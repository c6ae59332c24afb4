// The parameter-server link on Gloo (Note [Parameter-server link] in cpp/ps/link.h): one TCP device, one full-mesh
// context, unbound buffers per message.
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "../../check.h"
#include "../../group/gloo_error.h"
#include "../../group/store.h"
#include "../link.h"

namespace tl {
namespace ps {

namespace {

namespace tcp = gloo::transport::tcp;
using gloo::transport::UnboundBuffer;

// "Until aborted": Gloo takes a deadline for every wait; a day stands for none.
constexpr std::chrono::milliseconds kUntilAborted(24LL * 3600 * 1000);

class GlooLink final : public Link {
 public:
  explicit GlooLink(const LinkOptions& o) : o_(o) {
    TL_CHECK_ARG(o.size >= 1 && o.rank >= 0 && o.rank < o.size, Range,
                 "parameter-server link: rank must be in [0, size), got " << o.rank << " of " << o.size);
    store_ = group::RunStore::open(o.rdzv, o.runId);
    tcp::attr attr;
    if (!o.iface.empty())
      attr.iface = o.iface;
    else
      attr.hostname = o.address;
    try {
      device_ = tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(o.rank, o.size);
      ctx->setTimeout(std::chrono::milliseconds(o.timeoutMs));
      auto scoped = store_->scoped("ps/link");
      ctx->connectFullMesh(*scoped, device_);
      ctx_ = ctx;
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      TL_FAIL("parameter-server link of run '" << o.runId << "' (rank " << o.rank << " of " << o.size
                                               << "): connecting failed: " << group::glooMessage(e));
    }
  }

  ~GlooLink() override { close(); }

  int rank() const override { return o_.rank; }
  int size() const override { return o_.size; }

  void send(int peer, uint64_t tag, const void* data, size_t bytes, int64_t timeoutMs) override {
    transfer(true, peer, tag, const_cast<void*>(data), bytes, timeoutMs);
  }

  void recv(int peer, uint64_t tag, void* data, size_t bytes, int64_t timeoutMs) override {
    transfer(false, peer, tag, data, bytes, timeoutMs);
  }

  void abort(int peer, uint64_t tag) override {
    std::lock_guard<std::mutex> lk(mu_);
    aborted_.insert({peer, tag});
    auto it = waiting_.find({peer, tag});
    if (it == waiting_.end()) return;
    it->second.first ? it->second.second->abortWaitSend() : it->second.second->abortWaitRecv();
  }

  void close() override {
    if (closed_.exchange(true)) return;
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& w : waiting_) w.second.first ? w.second.second->abortWaitSend() : w.second.second->abortWaitRecv();
    if (ctx_) ctx_->closeConnections();
  }

 private:
  using Key = std::pair<int, uint64_t>;

  void transfer(bool sending, int peer, uint64_t tag, void* data, size_t bytes, int64_t timeoutMs) {
    const char* what = sending ? "send to" : "receive from";
    TL_CHECK(peer >= 0 && peer < o_.size && peer != o_.rank,
             "parameter-server link: cannot " << what << " rank " << peer << " (this is rank " << o_.rank << " of " << o_.size << ")");
    TL_CHECK(!closed_.load(), "parameter-server link: closed (the run ended); cannot " << what << " rank " << peer);
    std::unique_ptr<UnboundBuffer> buf = ctx_->createUnboundBuffer(data, bytes);
    {
      std::lock_guard<std::mutex> lk(mu_);
      TL_CHECK(!aborted_.count({peer, tag}), "parameter-server link: " << what << " rank " << peer << " was aborted");
      waiting_[{peer, tag}] = {sending, buf.get()};
    }
    bool done = false;
    std::string failure;
    try {
      sending ? buf->send(peer, tag, 0, bytes) : buf->recv(peer, tag, 0, bytes);
      const auto wait = timeoutMs > 0 ? std::chrono::milliseconds(timeoutMs) : kUntilAborted;
      done = sending ? buf->waitSend(wait) : buf->waitRecv(wait);
    } catch (const std::exception& e) {
      failure = group::glooMessage(e);
    }
    std::lock_guard<std::mutex> lk(mu_);
    waiting_.erase({peer, tag});
    if (!failure.empty()) {
      const bool timedOut = failure.find("Timed out") != std::string::npos;
      TL_FAIL("rank " << peer << (timedOut ? " did not answer within " + std::to_string(timeoutMs) + " ms" : " failed")
                      << " (" << (sending ? "sending to it" : "receiving from it") << " on the parameter-server link: " << failure << ")");
    }
    if (!done) {
      parked_.push_back(std::move(buf));  // a late message for it lands here, not in a freed buffer
      TL_FAIL("parameter-server link: " << what << " rank " << peer << " was aborted");
    }
  }

  LinkOptions o_;
  std::unique_ptr<group::RunStore> store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> ctx_;
  std::mutex mu_;
  std::map<Key, std::pair<bool, UnboundBuffer*>> waiting_;  // (sending?, buffer) of the wait on each (peer, tag)
  std::set<Key> aborted_;
  std::vector<std::unique_ptr<UnboundBuffer>> parked_;
  std::atomic<bool> closed_{false};
};

}  // namespace

std::shared_ptr<Link> connectLink(const LinkOptions& o) { return std::make_shared<GlooLink>(o); }

}  // namespace ps
}  // namespace tl
