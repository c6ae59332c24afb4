// Process groups in a build without Gloo (Note [Optional Gloo] in group.h): support() says why, creating one fails.
#include "../check.h"
#include "group.h"

#ifndef TL_GLOO_STATUS
#define TL_GLOO_STATUS "this addon was built without Gloo"
#endif

namespace tl {
namespace group {

Support support() {
  Support s;
  s.available = false;
  s.reason = TL_GLOO_STATUS;
  return s;
}

std::shared_ptr<ProcessGroup> createProcessGroup(const GroupOptions&) {
  TL_FAIL("multi-process groups are not available: " << TL_GLOO_STATUS
                                                     << "; install libgloo-dev and libhiredis-dev and rebuild the addon "
                                                        "(npm run build:native)");
}

}  // namespace group
}  // namespace tl
