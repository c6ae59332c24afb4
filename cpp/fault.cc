// Fault injection (Note [Fault injection] in fault.h): checking a requested fault and applying it at its op.
#include "fault.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "backend.h"
#include "registry.h"

namespace tl {

FaultSpec checkFault(const FaultRequest& r, const int64_t (&numelAt)[kFaultPoints]) {
  FaultSpec f;
  TL_CHECK_ARG(r.kind.has_value(), Type, "runWith: fault.kind must be 'stall', 'nan', 'bitflip' or 'throw'");
  const std::string& k = *r.kind;
  if (k == "stall") f.kind = FaultKind::Stall;
  else if (k == "nan") f.kind = FaultKind::NaN;
  else if (k == "bitflip") f.kind = FaultKind::BitFlip;
  else if (k == "throw") f.kind = FaultKind::Throw;
  else TL_CHECK_ARG(false, Range, "runWith: fault.kind must be 'stall', 'nan', 'bitflip' or 'throw', got '" << k << "'");

  TL_CHECK_ARG(r.point.has_value(), Type, "runWith: fault.point must be a number (an integer in [0, " << kFaultPoints << "))");
  const double p = *r.point;
  TL_CHECK_ARG(p >= 0 && p < kFaultPoints && std::floor(p) == p, Range,
               "runWith: fault.point must be an integer in [0, " << kFaultPoints << "), got " << p);
  f.point = static_cast<int>(p);
  const int64_t numel = numelAt[f.point];
  if (numel < 0) {
    std::string have;
    for (int q = 0; q < kFaultPoints; ++q)
      if (numelAt[q] >= 0) have += (have.empty() ? "" : ", ") + std::to_string(q);
    TL_CHECK_ARG(false, Range, "runWith: fault.point " << f.point << " has no '@fault' op in this program (its points: "
                                                       << (have.empty() ? "none" : have) << ")");
  }

  if (f.kind == FaultKind::Stall) {
    TL_CHECK_ARG(r.ms.has_value(), Type, "runWith: fault.ms (milliseconds to stall) must be a number for kind 'stall'");
    TL_CHECK_ARG(std::isfinite(*r.ms) && *r.ms >= 0, Range, "runWith: fault.ms must be finite and >= 0, got " << *r.ms);
    f.ms = *r.ms;
  }
  if (f.kind == FaultKind::NaN || f.kind == FaultKind::BitFlip) {
    TL_CHECK_ARG(r.index.has_value(), Type, "runWith: fault.index (an element of the op's buffer) must be a number for kind '"
                                                << k << "'");
    const double i = *r.index;
    TL_CHECK_ARG(i >= 0 && i < static_cast<double>(numel) && std::floor(i) == i, Range,
                 "runWith: fault.index must be an integer in [0, " << numel << ") (the '@fault' op's buffer at point "
                                                                    << f.point << "), got " << i);
    f.index = static_cast<int64_t>(i);
  }
  return f;
}

void applyFault(const FaultSpec& f, Backend& dev, Buffer& target, const std::string& device) {
  float* at = static_cast<float*>(target.data) + f.index;
  switch (f.kind) {
    case FaultKind::Stall:
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(f.ms));
      return;
    case FaultKind::NaN: {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      dev.copyIn(at, &nan, sizeof nan);
      return;
    }
    case FaultKind::BitFlip: {
      uint32_t bits = 0;
      dev.copyOut(&bits, at, sizeof bits);
      bits ^= kFlipMask;
      dev.copyIn(at, &bits, sizeof bits);
      return;
    }
    case FaultKind::Throw:
      TL_FAIL("injected fault at point " << f.point << " on " << device);
  }
}

}  // namespace tl
