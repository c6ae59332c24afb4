// Broadcasts: a small byte blob from one rank on the control context (its length first, then the bytes), and a range
// of a tower's buffer from one rank on a slot's context (the start-up weights).
#include <gloo/broadcast.h>

#include "../check.h"
#include "../registry.h"
#include "gloo_group.h"

namespace tl {
namespace group {

std::vector<uint8_t> GlooGroup::broadcast(const std::vector<uint8_t>& mine, int root, int64_t timeoutMs) {
  TL_CHECK_ARG(root >= 0 && root < opts_.size, Range, describe() << ": broadcast root must be a rank in [0, " << opts_.size << "), got " << root);
  std::lock_guard<std::mutex> lk(controlMu_);
  std::vector<uint8_t> out;
  guard("broadcast from rank " + std::to_string(root), timeoutMs, [&] {
    uint64_t len = mine.size();
    gloo::BroadcastOptions size(control_);
    size.setRoot(root);
    size.setOutput(&len, 1);
    size.setTimeout(deadline(timeoutMs));
    gloo::broadcast(size);
    TL_CHECK(len <= (uint64_t(64) << 20), describe() << ": broadcast of " << len << " bytes; the control context carries small blobs (<= 64 MiB)");
    out = opts_.rank == root ? mine : std::vector<uint8_t>(len);
    if (len == 0) return;
    gloo::BroadcastOptions data(control_);
    data.setRoot(root);
    data.setOutput(out.data(), out.size());
    data.setTimeout(deadline(timeoutMs));
    gloo::broadcast(data);
  });
  return out;
}

void GlooGroup::broadcastBuffer(int slot, Buffer& buf, int64_t offset, int64_t length, int root) {
  const std::string op = "broadcast from rank " + std::to_string(root) + " (slot " + std::to_string(slot) + ")";
  TL_CHECK_ARG(root >= 0 && root < opts_.size, Range, describe() << ": " << op << ": root must be a rank in [0, " << opts_.size << ")");
  checkSlotRange(op, slot, buf, offset, length);
  if (length == 0) return;
  std::lock_guard<std::mutex> lk(*slotMu_[slot]);
  std::vector<float>& host = staging_[slot];
  host.resize(static_cast<size_t>(length));
  Backend& dev = buf.device->backend();
  float* data = static_cast<float*>(buf.data) + offset;
  if (opts_.rank == root) dev.copyOut(host.data(), data, host.size() * sizeof(float));
  guard(op, opts_.timeoutMs, [&] {
    gloo::BroadcastOptions o(slotContexts_[slot]);
    o.setRoot(root);
    o.setOutput(host.data(), host.size());
    o.setTimeout(deadline(opts_.timeoutMs));
    gloo::broadcast(o);
  });
  if (opts_.rank != root) dev.copyIn(data, host.data(), host.size() * sizeof(float));
}

}  // namespace group
}  // namespace tl
