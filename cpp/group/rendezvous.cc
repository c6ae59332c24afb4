// Rendezvous (rendezvous.h): publish, wait with a deadline, check the records (Note [Run token]).
#include "rendezvous.h"

#include <sstream>

#include "../check.h"
#include "record.h"

namespace tl {
namespace group {

namespace {

std::string rankKey(int r) { return "rank/" + std::to_string(r); }

std::string seconds(int64_t ms) {
  std::ostringstream os;
  os << static_cast<double>(ms) / 1000.0 << " s";
  return os.str();
}

// "rank 2 never arrived", "ranks 2, 5 never arrived" (at most 8 listed).
std::string neverArrived(const std::vector<size_t>& missing) {
  std::ostringstream os;
  os << (missing.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < missing.size() && i < 8; ++i) os << (i ? ", " : "") << missing[i];
  if (missing.size() > 8) os << " and " << missing.size() - 8 << " more";
  os << " never arrived";
  return os.str();
}

void checkTokens(const GroupOptions& o, const std::vector<PeerInfo>& peers, const std::string& run) {
  if (peers[0].proof != o.proofs[0])
    TL_FAIL(run << ": this process's run token does not match the group's (" << peers[0].label()
                << "); every process of a run needs the same TOWERLINE_TOKEN (the token option)");
  std::vector<const PeerInfo*> bad;
  for (const PeerInfo& p : peers)
    if (p.proof != o.proofs[p.rank]) bad.push_back(&p);
  if (bad.empty()) return;
  std::ostringstream os;
  for (size_t i = 0; i < bad.size(); ++i) os << (i ? ", " : "") << bad[i]->label();
  TL_FAIL(run << ": " << os.str() << (bad.size() == 1 ? " has" : " have")
              << " a different run token and " << (bad.size() == 1 ? "was" : "were")
              << " refused; start every process with the same TOWERLINE_TOKEN");
}

}  // namespace

std::vector<PeerInfo> rendezvous(RunStore& store, const GroupOptions& o, const PeerInfo& me, Clock::time_point deadline) {
  const std::string run = "run '" + o.runId + "' (" + store.url() + ")";
  const std::string mine = rankKey(o.rank);
  const std::string taken = run + ": rank " + std::to_string(o.rank) + "'s record is already there: another process "
                            "joined as rank " + std::to_string(o.rank) + ", or an earlier run used this run id; give every "
                            "launch its own run id (TOWERLINE_RUN_ID)";
  TL_CHECK(!store.has(mine), taken);
  try {
    store.set(mine, encodeRecord(me));
  } catch (const Error&) {
    TL_CHECK(!store.has(mine), taken);  // written by another process since we looked
    throw;
  }
  std::vector<std::string> keys;
  for (int q = 0; q < o.size; ++q) keys.push_back(rankKey(q));
  const std::vector<size_t> missing = store.waitAll(keys, deadline);
  TL_CHECK(missing.empty(), o.size - static_cast<int>(missing.size())
                                << " of " << o.size << " ranks joined " << run << " within " << seconds(o.rendezvousTimeoutMs)
                                << ": " << neverArrived(missing)
                                << " (start every rank with the same run id and store, or raise the rendezvous timeout)");
  std::vector<PeerInfo> peers;
  for (int q = 0; q < o.size; ++q) {
    peers.push_back(decodeRecord(keys[q], store.get(keys[q])));
    TL_CHECK(peers.back().rank == q, run << ": the record under '" << keys[q] << "' says rank " << peers.back().rank);
  }
  checkTokens(o, peers, run);
  TL_CHECK(peers[o.rank].nonce == me.nonce, run << ": another process (" << peers[o.rank].label() << ", pid " << peers[o.rank].pid
                                                << ") also joined as rank " << o.rank << "; each rank must be started once");
  for (const PeerInfo& p : peers) {
    TL_CHECK(p.size == o.size, run << ": " << p.label() << " was started with world size " << p.size << ", this process with "
                                   << o.size << "; every rank needs the same world size");
    TL_CHECK(p.slots == o.slots, run << ": " << p.label() << " runs " << p.slots << " tower(s) per process, this process "
                                     << o.slots << "; every process must run the same number of towers");
  }
  return peers;
}

}  // namespace group
}  // namespace tl
