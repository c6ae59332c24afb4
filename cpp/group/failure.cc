// What went wrong when a collective fails: which rank died or stalled (Note [Failure diagnosis]).
#include <algorithm>
#include <sstream>
#include <thread>

#include "gloo_group.h"

namespace tl {
namespace group {

// Note [Failure diagnosis]: Gloo tells a rank only what it saw itself: a connection reset, or its own deadline
// passing (and then it closes that context's connections, so its peers see resets too). To name the rank at fault,
// a failing rank
//   1. posts "seen/<rank>" in the store (it is alive and failing);
//   2. probes its watch connections (Note [Process group contexts]): a rank whose watch connection is closed and
//      which posted nothing died; that is the verdict ("connection to rank 2 on host h closed: the process died?");
//   3. else adopts the verdict ("down/<rank>") some other rank already posted (the first cause spreads);
//   4. else keeps polling for a grace period (a quarter of the deadline, 2 to 5 s), then: after a timeout, the
//      ranks that posted nothing are the silent ones ("rank 2 on host h did not answer within 30000 ms in
//      all-reduce (slot 0)"); after any other error, its own message.
// Then it posts its verdict as "down/<rank>" and closes every connection, so the other ranks fail at once and find
// the verdict. A deliberate stop (abort, close) posts before it closes, so a closed connection without a notice
// can only be a process that died. Store writes are best effort: without a reachable store the verdict falls back
// to what this rank saw.

namespace {

constexpr uint64_t kProbeSlot = 0x746c70726f6265ull;  // "tlprobe": a slot no collective uses

std::string labels(const std::vector<PeerInfo>& peers, const std::vector<int>& ranks) {
  std::ostringstream os;
  for (size_t i = 0; i < ranks.size(); ++i) os << (i == 0 ? "" : i + 1 == ranks.size() ? " and " : ", ") << peers[ranks[i]].label();
  return os.str();
}

}  // namespace

std::vector<int> GlooGroup::probeClosed() {
  std::vector<int> closed;
  for (int q = 0; q < opts_.size; ++q) {
    if (q == opts_.rank) continue;
    try {
      probe_->send(q, kProbeSlot);  // a healthy peer only records a pending send; a closed pair throws its error
    } catch (const std::exception&) {
      closed.push_back(q);
    }
  }
  return closed;
}

void GlooGroup::notice(const char* kind, const std::string& text) {
  {
    std::lock_guard<std::mutex> lk(stateMu_);
    bool& posted = std::string(kind) == "seen" ? postedSeen_ : postedDown_;
    if (posted) return;
    posted = true;
  }
  try {
    store_->set(std::string(kind) + "/" + std::to_string(opts_.rank), text);
  } catch (const std::exception&) {
    // best effort (the store may be what failed)
  }
}

bool GlooGroup::hasNotice(int rank) {
  try {
    return store_->has("seen/" + std::to_string(rank)) || store_->has("down/" + std::to_string(rank));
  } catch (const std::exception&) {
    return false;
  }
}

std::string GlooGroup::verdictOf(int rank) {
  try {
    const std::string key = "down/" + std::to_string(rank);
    return store_->has(key) ? store_->get(key) : std::string();
  } catch (const std::exception&) {
    return {};
  }
}

GlooGroup::Verdict GlooGroup::diagnose(const std::string& op, const std::string& what, bool timedOut, int64_t timeoutMs) {
  const std::string me = peers_[opts_.rank].label();
  notice("seen", me + " failed in " + op + ": " + what);
  const auto grace = std::chrono::milliseconds(std::clamp<int64_t>(timeoutMs / 4, 2000, 5000));
  const auto until = Clock::now() + grace;
  for (;;) {
    std::vector<int> dead;
    for (int q : probeClosed())
      if (!hasNotice(q)) dead.push_back(q);
    if (!dead.empty()) {
      const bool one = dead.size() == 1;
      return {std::string(one ? "connection to " : "connections to ") + labels(peers_, dead) + " closed: the process" +
                  (one ? "" : "es") + " died? (noticed by rank " + std::to_string(opts_.rank) + " in " + op + ")",
              -1};
    }
    for (int q = 0; q < opts_.size; ++q) {
      if (q == opts_.rank) continue;
      std::string v = verdictOf(q);
      if (!v.empty()) return {v, v.rfind(peers_[q].label(), 0) == 0 ? -1 : q};
    }
    if (Clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (timedOut) {
    std::vector<int> silent;
    for (int q = 0; q < opts_.size; ++q)
      if (q != opts_.rank && !hasNotice(q)) silent.push_back(q);
    if (!silent.empty())
      return {labels(peers_, silent) + " did not answer within " + std::to_string(timeoutMs) + " ms in " + op, -1};
  }
  return {op + " on " + me + " failed: " + what, -1};
}

}  // namespace group
}  // namespace tl
