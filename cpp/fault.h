// Fault injection, in one place: the fault a run may arm, its validation, and what it does at its '@fault' op.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace tl {

class Backend;
struct Buffer;

// Note [Fault injection]: a step program holds '@fault' ops at fixed points (numbered by the tower, 0..15), in
// production too; each names one f32 buffer. A run may arm one fault (runWith's 4th argument): when execution
// reaches the first '@fault' op of that point, the fault happens there, on the production path: 'stall' sleeps,
// 'nan' writes a NaN into the op's buffer, 'bitflip' flips one bit of an element of it (silent corruption),
// 'throw' fails the run like a kernel error (peers in a collective are aborted, the promise rejects naming the
// device). Unarmed, a '@fault' op costs one integer compare. The spec is checked on the JS thread when the run is
// submitted, against the program, so a bad spec never reaches a device.
constexpr int kFaultPoints = 16;  // points 0..15

enum class FaultKind { Stall, NaN, BitFlip, Throw };

struct FaultSpec {
  int point = -1;
  FaultKind kind = FaultKind::Stall;
  double ms = 0;      // Stall
  int64_t index = 0;  // NaN, BitFlip: the element of the op's buffer
};

// What JS passed, field by field (unset fields absent); checked by checkFault.
struct FaultRequest {
  std::optional<double> point, ms, index;
  std::optional<std::string> kind;  // absent or not a string: a TypeError naming fault.kind
};

// Checks the request against a program whose '@fault' op for point p (if any) holds `numelAt[p]` elements (-1:
// no such op) and returns the spec; throws tl::Error (TypeError/RangeError kind) naming the field otherwise.
FaultSpec checkFault(const FaultRequest& r, const int64_t (&numelAt)[kFaultPoints]);

// The fault's effect at its op (device thread): `target` is the op's buffer, `device` names it in errors.
void applyFault(const FaultSpec& f, Backend& dev, Buffer& target, const std::string& device);

// The bit 'bitflip' flips: the lowest mantissa bit of an f32 (CONTRACT.md section 1).
constexpr uint32_t kFlipMask = 1u;

}  // namespace tl
