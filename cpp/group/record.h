// What each rank publishes at rendezvous (Note [Rendezvous records]): its place in the group, where it listens,
// and its run token's proof; PeerInfo (group.h) is the decoded form.
#pragma once
#include <string>

#include "group.h"

namespace tl {
namespace group {

// Note [Rendezvous records]: rank r writes the key "rank/<r>" once, as "field=value" lines: the format version,
// rank, world size, local rank and size, slots, hostname, the address its TCP transport listens on, pid, the proof
// of its run token (Note [Run token]) and a random nonce. The nonce tells a rank whether the record under its key
// is its own (two processes started with the same rank are refused; the stores never overwrite a key). Later
// errors name a rank with its hostname and address from its record.
std::string encodeRecord(const PeerInfo& p);
// Throws naming the key and the field when the text is not a record of this version.
PeerInfo decodeRecord(const std::string& key, const std::string& text);

}  // namespace group
}  // namespace tl
