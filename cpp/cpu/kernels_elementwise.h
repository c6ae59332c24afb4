// What the elementwise kernels share with the fused updates (kernels_optim.cc).
#pragma once

namespace tl {
namespace cpuk {

// clip_by_norm's factor for a global squared norm s: false (leave g alone) when s = 0 or clipNorm/sqrt(s) >= 1,
// else true with *factor = (float)(clipNorm/sqrt(s)) (computed in double; a NaN norm gives a NaN factor).
bool clipFactor(double s, double clipNorm, float* factor);

}  // namespace cpuk
}  // namespace tl
