// Rendezvous: every rank publishes its record (record.h) and waits, up to a deadline, for all the others'.
#pragma once
#include <vector>

#include "group.h"
#include "store.h"

namespace tl {
namespace group {

// Note [Run token]: a run's processes share a secret token (TOWERLINE_TOKEN). The token never enters native code
// or the store: src/group/token.ts gives createGroup proofs[q] = HMAC-SHA256(token, "towerline-join|<run id>|q")
// for every rank q, and rank r publishes proofs[r] in its record. Every rank checks every record before any
// context connects. Rank 0's token defines the group's: a process whose proofs do not match rank 0's record fails
// with "this process's run token does not match the group's (rank 0 on host ...)"; the others fail naming it. The
// proof keeps out processes started with another token (or none); it is not a defence against someone who can
// read the store and replay a record, nor does Gloo's TCP transport authenticate its connections: keep the store
// and the transport on a trusted network (both bind loopback unless told otherwise).

// Publishes `me` under "rank/<r>", waits until `deadline` for every rank's record and checks them (run token,
// world size, slots, one process per rank); returns every rank's record in rank order. Throws naming what is
// missing ("2 of 3 ranks joined run 'x' within 5 s: rank 2 never arrived") or wrong.
std::vector<PeerInfo> rendezvous(RunStore& store, const GroupOptions& o, const PeerInfo& me, Clock::time_point deadline);

}  // namespace group
}  // namespace tl
