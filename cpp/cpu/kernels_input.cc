// CPU input kernels: gather dataset rows (u8 scaled to f32, or f32) and u8 labels by an index batch.
#include <cstring>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// in: src (R,D) u8, idx (B) i32; out: y (B,D) f32 = src[idx[b]]·scale
TL_CPU_KERNEL(gather_rows_u8) {
  const GatherRowsArgs& a = c.args<GatherRowsArgs>();
  const int64_t B = a.B, D = a.D;
  const float s = a.scale;
  checkIndices(c, a.idx);
  const int32_t* idx = a.idx.values(c);
  const uint8_t* src = c.in[0].u8();
  float* y = c.out[0].f32();
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* row = src + (int64_t)idx[b] * D;
    float* yb = y + b * D;
    for (int64_t j = 0; j < D; ++j) yb[j] = (float)row[j] * s;
  }
}

// in: src (R,D) f32, idx (B) i32; out: y (B,D) = src[idx[b]]
TL_CPU_KERNEL(gather_rows_f32) {
  const GatherRowsArgs& a = c.args<GatherRowsArgs>();
  const int64_t B = a.B, D = a.D;
  checkIndices(c, a.idx);
  const int32_t* idx = a.idx.values(c);
  const float* src = c.in[0].f32();
  float* y = c.out[0].f32();
  for (int64_t b = 0; b < B; ++b)
    if (D > 0) std::memcpy(y + b * D, src + (int64_t)idx[b] * D, (size_t)D * sizeof(float));
}

// in: src (R) u8, idx (B) i32; out: y (B) i32 = src[idx[b]]
TL_CPU_KERNEL(gather_labels_u8) {
  const GatherLabelsArgs& a = c.args<GatherLabelsArgs>();
  const int64_t B = a.B;
  checkIndices(c, a.idx);
  const int32_t* idx = a.idx.values(c);
  const uint8_t* src = c.in[0].u8();
  int32_t* y = c.out[0].i32();
  for (int64_t b = 0; b < B; ++b) y[b] = src[idx[b]];
}

}  // namespace cpuk
}  // namespace tl
