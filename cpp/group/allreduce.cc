// The remote all-reduce: one slot's shard summed over every process of the group (Note [Remote steps]).
#include <gloo/allreduce.h>
#include <gloo/math.h>

#include "../check.h"
#include "../registry.h"
#include "gloo_group.h"

namespace tl {
namespace group {

// Note [Gloo ring all-reduce is bit-identical]: we ask Gloo for its ring algorithm
// (AllreduceOptions::Algorithm::RING) with gloo::sum<float> as the reduction and one buffer per process as input
// and output. As upstream gloo/allreduce.cc writes it (the ring path we read is the same in the 2018 to 2022
// sources; Debian packages the 2022-05-18 snapshot), the buffer is cut into one chunk per process, each cut into
// segments. In the reduce-scatter half every segment travels the ring once and each rank adds its own values to
// what it received, so each element's sum is computed by exactly one rank, in an order fixed by the ranks (not by
// timing). In the all-gather half those bytes are received straight into the other ranks' output buffers, with no
// arithmetic. So every process ends with the same bytes, and the same inputs give the same bytes run after run.
// We pin RING (rather than Gloo's default) so every process runs this algorithm whatever the default becomes.
// test/group.test.ts compares the result's bytes across 2 and 3 processes, for lengths from 1 to 1M + 3.

void GlooGroup::checkSlotRange(const std::string& op, int slot, const Buffer& buf, int64_t offset, int64_t length) const {
  TL_CHECK(slot >= 0 && slot < opts_.slots, describe() << ": " << op << ": slot must be in [0, " << opts_.slots << ")");
  TL_CHECK(buf.dtype == DType::F32, describe() << ": " << op << ": buffer #" << buf.handle << " must be f32");
  TL_CHECK(offset >= 0 && length >= 0 && offset <= buf.numel - length,
           describe() << ": " << op << ": range [" << offset << ", " << offset + length << ") is outside buffer #" << buf.handle
                      << " of " << buf.numel << " elements");
  TL_CHECK(!stopped_.load(), stopped() << " (" << op << " not started)");
}

void GlooGroup::allReduce(int slot, Buffer& buf, int64_t offset, int64_t length) {
  const std::string op = "all-reduce (slot " + std::to_string(slot) + ")";
  checkSlotRange(op, slot, buf, offset, length);
  if (length == 0) return;  // every process runs the same schedule, so all of them skip it
  std::lock_guard<std::mutex> lk(*slotMu_[slot]);
  // Staged through host memory for every backend (a copy for cpu towers; the host-staged path for GPUs).
  std::vector<float>& host = staging_[slot];
  host.resize(static_cast<size_t>(length));
  Backend& dev = buf.device->backend();
  float* data = static_cast<float*>(buf.data) + offset;
  dev.copyOut(host.data(), data, host.size() * sizeof(float));
  guard(op, opts_.timeoutMs, [&] {
    gloo::AllreduceOptions o(slotContexts_[slot]);
    o.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    o.setOutput(host.data(), host.size());
    o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    o.setTimeout(deadline(opts_.timeoutMs));
    gloo::allreduce(o);
  });
  dev.copyIn(data, host.data(), host.size() * sizeof(float));
}

}  // namespace group
}  // namespace tl
