// All-gather of small byte blobs on the control context (replica hashes, settings agreement): every rank gets every
// rank's blob, in rank order. Blobs may differ in length: the lengths go first, then the blobs padded to the longest.
#include <gloo/allgather.h>

#include <algorithm>

#include "../check.h"
#include "gloo_group.h"

namespace tl {
namespace group {

std::vector<std::vector<uint8_t>> GlooGroup::allGather(const std::vector<uint8_t>& mine, int64_t timeoutMs) {
  std::lock_guard<std::mutex> lk(controlMu_);
  const size_t n = static_cast<size_t>(opts_.size);
  std::vector<uint64_t> lengths(n);
  std::vector<uint8_t> all;
  guard("all-gather", timeoutMs, [&] {
    uint64_t len = mine.size();
    gloo::AllgatherOptions sizes(control_);
    sizes.setInput(&len, 1);
    sizes.setOutput(lengths.data(), n);
    sizes.setTimeout(deadline(timeoutMs));
    gloo::allgather(sizes);
    const uint64_t longest = std::max<uint64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
    TL_CHECK(longest <= (uint64_t(64) << 20), describe() << ": all-gather of " << longest
                                                         << " bytes; the control context carries small blobs (<= 64 MiB)");
    std::vector<uint8_t> padded(longest, 0);
    std::copy(mine.begin(), mine.end(), padded.begin());
    all.assign(longest * n, 0);
    gloo::AllgatherOptions blobs(control_);
    blobs.setInput(padded.data(), longest);
    blobs.setOutput(all.data(), all.size());
    blobs.setTimeout(deadline(timeoutMs));
    gloo::allgather(blobs);
  });
  std::vector<std::vector<uint8_t>> out(n);
  const size_t stride = all.size() / n;
  for (size_t q = 0; q < n; ++q) out[q].assign(all.begin() + q * stride, all.begin() + q * stride + lengths[q]);
  return out;
}

}  // namespace group
}  // namespace tl
