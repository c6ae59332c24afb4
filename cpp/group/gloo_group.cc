// The process group on Gloo (gloo_group.h): the op guard, abort and close; createProcessGroup and support().
#include "gloo_group.h"

#include <gloo/config.h>

#include "../check.h"
#include "gloo_error.h"

namespace tl {
namespace group {

GlooGroup::~GlooGroup() {
  probe_.reset();  // before the watch context it belongs to
}

std::string GlooGroup::describe() const {
  return "process group of run '" + opts_.runId + "' (rank " + std::to_string(opts_.rank) + " of " + std::to_string(opts_.size) + ")";
}

std::string GlooGroup::abortedWith() const {
  std::lock_guard<std::mutex> lk(stateMu_);
  return firstCause_;
}

std::string GlooGroup::stopped() const { return describe() + " is stopped: " + abortedWith(); }

std::chrono::milliseconds GlooGroup::deadline(int64_t timeoutMs) const {
  return std::chrono::milliseconds(timeoutMs > 0 ? timeoutMs : opts_.timeoutMs);
}

void GlooGroup::guard(const std::string& op, int64_t timeoutMs, const std::function<void()>& body) {
  TL_CHECK(!stopped_.load(), stopped() << " (" << op << " not started)");
  try {
    body();
  } catch (const Error&) {
    throw;  // our own argument checks
  } catch (const std::exception& e) {
    fail(op, e, timeoutMs > 0 ? timeoutMs : opts_.timeoutMs);
  }
}

// Gloo says "Timed out waiting ...ms for recv operation" when this op's deadline passed, and "Application timeout
// caused pair closure" for the other pairs of a context it closed then.
void GlooGroup::fail(const std::string& op, const std::exception& e, int64_t timeoutMs) {
  const std::string what = glooMessage(e);
  const bool timedOut = what.find("Timed out") != std::string::npos || what.find("timeout") != std::string::npos;
  std::lock_guard<std::mutex> lk(failMu_);
  TL_CHECK(!stopped_.load(), stopped() << " (" << op << ": " << what << ")");
  const Verdict v = diagnose(op, what, timedOut, timeoutMs);
  stop(v.cause);
  TL_FAIL(v.cause << (v.reportedBy >= 0 ? " (reported by rank " + std::to_string(v.reportedBy) + ")" : std::string()));
}

void GlooGroup::abort(const std::string& why) {
  if (stopped_.load()) return;
  stop(peers_[opts_.rank].label() + " stopped the group: " + why);
}

void GlooGroup::close() {
  if (stopped_.load()) return;
  stop(peers_[opts_.rank].label() + " closed its process group");
}

// The first cause wins; it is posted before the connections close, so a peer that sees them close finds it
// (Note [Failure diagnosis]).
void GlooGroup::stop(const std::string& cause) {
  {
    std::lock_guard<std::mutex> lk(stateMu_);
    if (!firstCause_.empty()) return;
    firstCause_ = cause;
  }
  stopped_ = true;
  notice("seen", cause);
  notice("down", cause);
  for (auto* ctx : {&watch_, &control_}) {
    if (*ctx) (*ctx)->closeConnections();
  }
  for (auto& ctx : slotContexts_) ctx->closeConnections();
}

std::shared_ptr<ProcessGroup> createProcessGroup(const GroupOptions& opts) { return GlooGroup::create(opts); }

Support support() {
  Support s;
  s.available = true;
  s.glooVersion = std::to_string(GLOO_VERSION_MAJOR) + "." + std::to_string(GLOO_VERSION_MINOR) + "." + std::to_string(GLOO_VERSION_PATCH);
  s.stores.push_back("file");
#ifdef TL_HAVE_REDIS_STORE
  s.stores.push_back("redis");
#endif
  s.transports.push_back("tcp");
  return s;
}

}  // namespace group
}  // namespace tl
