// The parameter-server link in a build without Gloo (Note [Optional Gloo] in cpp/group/group.h).
#include "../../check.h"
#include "../link.h"

#ifndef TL_GLOO_STATUS
#define TL_GLOO_STATUS "this addon was built without Gloo"
#endif

namespace tl {
namespace ps {

std::shared_ptr<Link> connectLink(const LinkOptions&) {
  TL_FAIL("parameter servers in other processes need process groups, which are not available: "
          << TL_GLOO_STATUS << "; install libgloo-dev and libhiredis-dev and rebuild the addon (npm run build:native)");
}

}  // namespace ps
}  // namespace tl
