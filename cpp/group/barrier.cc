// Barrier on the control context: returns once every rank reached it, or fails by the deadline naming who did not.
#include <gloo/barrier.h>

#include "gloo_group.h"

namespace tl {
namespace group {

void GlooGroup::barrier(int64_t timeoutMs) {
  std::lock_guard<std::mutex> lk(controlMu_);
  guard("barrier", timeoutMs, [&] {
    gloo::BarrierOptions o(control_);
    o.setTimeout(deadline(timeoutMs));
    gloo::barrier(o);
  });
}

}  // namespace group
}  // namespace tl
