// Creating a process group: the TCP device, the rendezvous, then every context (Note [Process group contexts]).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <iomanip>
#include <random>
#include <sstream>

#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include "../check.h"
#include "gloo_error.h"
#include "gloo_group.h"
#include "rendezvous.h"

namespace tl {
namespace group {

namespace {

namespace tcp = gloo::transport::tcp;

// The numeric address the device will listen on (what getaddrinfo resolved, or the interface's address).
std::string numericAddress(const tcp::attr& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ai_addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.ai_addr)->sin_addr, buf, sizeof(buf));
  else if (a.ai_addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.ai_addr)->sin6_addr, buf, sizeof(buf));
  return buf;
}

std::string randomNonce() {
  std::random_device rd;
  std::ostringstream os;
  for (int i = 0; i < 4; ++i) os << std::hex << std::setw(8) << std::setfill('0') << rd();
  return os.str();
}

std::string thisHostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

void checkOptions(const GroupOptions& o) {
  TL_CHECK_ARG(o.size >= 1 && o.rank >= 0 && o.rank < o.size, Range,
               "process group: rank must be in [0, world size), got rank " << o.rank << " of " << o.size);
  TL_CHECK_ARG(o.localSize >= 1 && o.localRank >= 0 && o.localRank < o.localSize, Range,
               "process group: local rank must be in [0, local world size), got " << o.localRank << " of " << o.localSize);
  TL_CHECK_ARG(o.slots >= 1 && o.slots <= 4096, Range, "process group: slots (towers per process) must be in [1, 4096], got " << o.slots);
  TL_CHECK_ARG(!o.runId.empty() && o.runId.find_first_of("/\n\r\t ") == std::string::npos, Range,
               "process group: the run id must be non-empty without '/' or whitespace, got '" << o.runId << "'");
  TL_CHECK_ARG(static_cast<int>(o.proofs.size()) == o.size, Range,
               "process group: expected one run-token proof per rank (" << o.size << "), got " << o.proofs.size());
  TL_CHECK_ARG(o.timeoutMs > 0 && o.rendezvousTimeoutMs > 0, Range,
               "process group: timeouts must be > 0 ms, got " << o.timeoutMs << " and " << o.rendezvousTimeoutMs);
}

}  // namespace

GlooGroup::GlooGroup(const GroupOptions& opts) : opts_(opts) {}

std::shared_ptr<GlooGroup> GlooGroup::create(const GroupOptions& opts) {
  checkOptions(opts);
  std::shared_ptr<GlooGroup> g(new GlooGroup(opts));
  g->connect();
  return g;
}

void GlooGroup::connect() {
  const auto deadline = Clock::now() + std::chrono::milliseconds(opts_.rendezvousTimeoutMs);
  store_ = RunStore::open(opts_.rdzv, opts_.runId);
  tcp::attr attr;
  if (!opts_.iface.empty())
    attr.iface = opts_.iface;
  else
    attr.hostname = opts_.address;
  const std::string where = opts_.iface.empty() ? "address " + opts_.address : "interface " + opts_.iface;
  PeerInfo me;
  try {
    me.address = numericAddress(tcp::CreateDeviceAttr(attr));
    device_ = tcp::CreateDevice(attr);
  } catch (const std::exception& e) {
    TL_FAIL("process group: cannot listen on " << where << ": " << glooMessage(e) << " (set the bind address or interface)");
  }
  me.rank = opts_.rank;
  me.size = opts_.size;
  me.localRank = opts_.localRank;
  me.localSize = opts_.localSize;
  me.slots = opts_.slots;
  me.hostname = opts_.hostname.empty() ? thisHostname() : opts_.hostname;
  me.pid = static_cast<int64_t>(getpid());
  me.proof = opts_.proofs[opts_.rank];
  me.nonce = randomNonce();
  peers_ = rendezvous(*store_, opts_, me, deadline);

  auto connectOne = [&](const std::string& name) {
    auto ctx = std::make_shared<gloo::rendezvous::Context>(opts_.rank, opts_.size);
    ctx->setTimeout(std::chrono::milliseconds(opts_.timeoutMs));
    try {
      auto scoped = store_->scoped("ctx/" + name);
      ctx->connectFullMesh(*scoped, device_);
    } catch (const std::exception& e) {
      TL_FAIL(describe() << ": connecting the '" << name << "' context failed: " << glooMessage(e)
                         << " (every rank joined the rendezvous; a rank that stopped since says why in its own error)");
    }
    return std::shared_ptr<gloo::Context>(ctx);
  };
  watch_ = connectOne("watch");
  control_ = connectOne("control");
  for (int s = 0; s < opts_.slots; ++s) slotContexts_.push_back(connectOne("slot" + std::to_string(s)));
  staging_.resize(opts_.slots);
  for (int s = 0; s < opts_.slots; ++s) slotMu_.push_back(std::make_unique<std::mutex>());
  probe_ = watch_->createUnboundBuffer(&probeByte_, 1);
  barrier(opts_.timeoutMs);  // nobody leaves before every rank connected every context
}

}  // namespace group
}  // namespace tl
