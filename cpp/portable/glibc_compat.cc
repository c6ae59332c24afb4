// Linked into the prebuilt addon only (CMake option TOWERLINE_PORTABLE, npm run build:prebuilt): keeps the glibc it
// needs at 2.34 (Ubuntu 22.04, RHEL 9, Debian 12) although it is built on a newer one. The statically linked
// libstdc++ references arc4random (glibc 2.36) from std::random_device, which towerline never uses; the link maps that
// reference here (-Wl,--wrap=arc4random) to getrandom (glibc 2.25), which gives the same guarantee.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

extern "C" uint32_t __wrap_arc4random(void) {
  uint32_t v = 0;
  for (;;) {
    ssize_t n = getrandom(&v, sizeof v, 0);
    if (n == static_cast<ssize_t>(sizeof v)) return v;
    if (n < 0 && errno != EINTR) std::abort();  // arc4random cannot fail either: it aborts
  }
}
