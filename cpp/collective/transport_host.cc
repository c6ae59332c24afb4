// The host-memory transport: CPU towers share the process's memory, so a step is a plain loop or memcpy.
#include <algorithm>
#include <cstring>
#include <vector>

#include "transport.h"

namespace tl {

namespace {

class HostMemoryTransport final : public Transport {
 public:
  const char* name() const override { return "host-memory"; }
  bool canConnect(Device& dst, Device& src) const override {
    return dst.backend().kind() == "cpu" && src.backend().kind() == "cpu";
  }
  void reduce(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    float* d = static_cast<float*>(dst.data) + offset;
    const float* s = static_cast<const float*>(src.data) + offset;
    for (int64_t i = 0; i < length; ++i) d[i] += s[i];
  }
  void copy(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const override {
    std::memcpy(static_cast<float*>(dst.data) + offset, static_cast<const float*>(src.data) + offset,
                static_cast<size_t>(length) * sizeof(float));
  }
  bool canPush(Device& dst, Device& src, Device& target) const override {
    return canConnect(dst, src) && target.backend().kind() == "cpu";
  }
  // One pass: each sum is computed once, in a register, and stored into dst and every target (the all-gather copy
  // it replaces would read dst's chunk again from memory).
  void reduceAndPush(Buffer& dst, Buffer& src, const std::vector<Buffer*>& targets, int64_t offset,
                     int64_t length) const override {
    float* d = static_cast<float*>(dst.data) + offset;
    const float* s = static_cast<const float*>(src.data) + offset;
    if (targets.size() == 1) {
      float* t = static_cast<float*>(targets[0]->data) + offset;
      // t is either src itself or disjoint from d and s, so element i's writes never feed another element's reads.
#pragma GCC ivdep
      for (int64_t i = 0; i < length; ++i) {
        const float v = d[i] + s[i];
        d[i] = v;
        t[i] = v;
      }
      return;
    }
    constexpr int64_t kBlock = 2048;  // 8 KB: the block is still in L1 when it is copied out
    for (int64_t b = 0; b < length; b += kBlock) {
      const int64_t n = std::min(kBlock, length - b);
      for (int64_t i = b; i < b + n; ++i) d[i] += s[i];
      for (Buffer* tb : targets) std::memcpy(static_cast<float*>(tb->data) + offset + b, d + b, static_cast<size_t>(n) * sizeof(float));
    }
  }
};

}  // namespace

void Transport::reduceAndPush(Buffer& dst, Buffer&, const std::vector<Buffer*>&, int64_t, int64_t) const {
  TL_FAIL("transport " << name() << " (towers on " << dst.device->name() << ") cannot run fused reduce-and-push steps");
}

const Transport& hostMemoryTransport() {
  static HostMemoryTransport t;
  return t;
}

std::vector<const Transport*>& transportTable() {
  static std::vector<const Transport*> table{&hostMemoryTransport()};
  return table;
}

void addTransport(const Transport* t, bool front) {
  auto& table = transportTable();
  for (const Transport* x : table)
    if (x == t) return;
  if (front)
    table.insert(table.begin(), t);
  else
    table.push_back(t);
}

const Transport& selectTransport(Device& dst, Device& src) {
  for (const Transport* t : transportTable())
    if (t->canConnect(dst, src)) return *t;
  TL_FAIL("no transport connects " << src.name() << " to " << dst.name()
                                   << "; towers of this pair of device kinds cannot exchange gradients in this build");
}

}  // namespace tl
