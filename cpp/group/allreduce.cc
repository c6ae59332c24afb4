// The remote all-reduce: one slot's shard summed over every process of the group (Note [Remote steps]).
#include <gloo/allreduce.h>
#include <gloo/math.h>

#include "../check.h"
#include "../registry.h"
#include "gloo_group.h"

namespace tl {
namespace group {

// Note [Gloo ring all-reduce is bit-identical]: we ask Gloo (gloo/allreduce.cc, the Debian 0.0~git20220518
// snapshot) for its ring algorithm (AllreduceOptions::Algorithm::RING), with gloo::sum<float> as the reduction and
// one buffer per process as input and output. The ring splits the buffer into one chunk per process (each cut into
// segments); in the reduce-scatter half each segment travels the ring once, and the rank where it ends adds the
// last contribution, so every element's sum is computed by exactly one rank, in one order fixed by the ranks. The
// all-gather half then sends those bytes around the ring into the other ranks' buffers verbatim (recv straight
// into the output, no arithmetic), so every process ends with the same bytes. The order of the additions depends
// on the ring, not on timing, so the same inputs give the same result run after run. (Gloo's bcube and
// halving-doubling algorithms share this property, but we pin RING so that every process runs the same algorithm
// whatever Gloo's default becomes.) test/group.test.ts checks the bytes across processes.

void GlooGroup::allReduce(int slot, Buffer& buf, int64_t offset, int64_t length) {
  const std::string op = "all-reduce (slot " + std::to_string(slot) + ")";
  TL_CHECK(slot >= 0 && slot < opts_.slots, describe() << ": " << op << ": slot must be in [0, " << opts_.slots << ")");
  TL_CHECK(buf.dtype == DType::F32, describe() << ": " << op << ": buffer #" << buf.handle << " must be f32");
  TL_CHECK(offset >= 0 && length >= 0 && offset <= buf.numel - length,
           describe() << ": " << op << ": range [" << offset << ", " << offset + length << ") is outside buffer #" << buf.handle
                      << " of " << buf.numel << " elements");
  TL_CHECK(!stopped_.load(), stopped() << " (" << op << " not started)");
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
