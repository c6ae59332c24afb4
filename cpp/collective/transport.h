// Transports move and reduce chunks between two towers' buffers; the first transport whose canConnect says yes wins.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../registry.h"

namespace tl {

// Note [Transports]: a collective step is "dst chunk += src chunk" (reduce) or "dst chunk = src chunk" (copy,
// bit-exact). How bytes get from the source tower to the destination depends on the pair of devices: host
// memory for CPU towers, peer-to-peer copies or a pinned host stage for GPUs. Each transport lives in its own
// file; the table is ordered by preference and the first one whose canConnect accepts the pair is used.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual bool canConnect(Device& dst, Device& src) const = 0;
  // Runs on dst's device thread. Offsets and lengths are in elements (f32).
  virtual void reduce(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const = 0;
  virtual void copy(Buffer& dst, Buffer& src, int64_t offset, int64_t length) const = 0;
  // A fused step (Note [Fused steps] in exec_plan.h): whether dst's device thread may, while it reduces src's
  // chunk into its own, also write the sum into `target`'s buffer. Transports that cannot say no.
  virtual bool canPush(Device& dst, Device& src, Device& target) const { return false; }
  // Runs on dst's device thread: dst chunk += src chunk, the same sum written verbatim into every `targets` chunk
  // (each either a buffer distinct from dst and src, or src itself). Called only where canPush said yes.
  virtual void reduceAndPush(Buffer& dst, Buffer& src, const std::vector<Buffer*>& targets, int64_t offset,
                             int64_t length) const;
};

const Transport& hostMemoryTransport();
// The table, in order of preference.
std::vector<const Transport*>& transportTable();
// Adds a transport (the CUDA backend registers its own at start-up, before any communicator exists): at the front
// (preferred over those already there) or at the back. Adding one that is already in the table does nothing.
void addTransport(const Transport* t, bool front);
const Transport& selectTransport(Device& dst, Device& src);

}  // namespace tl
