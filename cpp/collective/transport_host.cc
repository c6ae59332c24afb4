// The host-memory transport: CPU towers share the process's memory, so a step is a plain loop or memcpy.
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
};

}  // namespace

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
