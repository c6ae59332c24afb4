// CPU image input kernel: crop, optional horizontal flip and per-image standardisation of u8 NHWC images, gathered
// by an index batch (docs/kernels.md, "Input"). The CIFAR-10 tutorial's preprocessing, done where the bytes live.
#include <algorithm>
#include <cmath>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// in: src (R,H,W,C) u8, idx (B) i32, params (B,3) i32 [dy, dx, flip]; out: y (B,OH,OW,C) f32
TL_CPU_KERNEL(crop_flip_standardize_u8) {
  const CropArgs& a = c.args<CropArgs>();
  const int64_t B = a.B, W = a.W, C = a.C, OH = a.OH, OW = a.OW, img = a.img, N = a.N;
  const int32_t* idx = a.idx.values(c);
  const int32_t* prm = c.in[2].i32();
  checkIndices(c, a.idx);
  checkCropParams(c, a, prm);
  if (N == 0) return;
  const uint8_t* src = c.in[0].u8();
  float* y = c.out[0].f32();
  const double minStd = 1.0 / std::sqrt((double)N);
  const int64_t rowLen = OW * C;
  // images are independent: any cut over the device's threads gives the same bits
  forEachRowBlock(B, N, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int32_t dy = prm[3 * b], dx = prm[3 * b + 1], flip = prm[3 * b + 2];
      const uint8_t* im = src + (int64_t)idx[b] * img;
      // Two passes in double over the crop (the statistics do not depend on the flip).
      double sum = 0;
      for (int64_t i = 0; i < OH; ++i) {
        const uint8_t* row = im + ((dy + i) * W + dx) * C;
        for (int64_t j = 0; j < rowLen; ++j) sum += row[j];
      }
      const double mean = sum / (double)N;
      double ss = 0;
      for (int64_t i = 0; i < OH; ++i) {
        const uint8_t* row = im + ((dy + i) * W + dx) * C;
        for (int64_t j = 0; j < rowLen; ++j) {
          const double d = row[j] - mean;
          ss += d * d;
        }
      }
      const double inv = 1.0 / std::max(std::sqrt(ss / (double)N), minStd);
      float* yb = y + b * N;
      for (int64_t i = 0; i < OH; ++i) {
        const uint8_t* row = im + ((dy + i) * W + dx) * C;
        float* out = yb + i * rowLen;
        for (int64_t j = 0; j < OW; ++j) {
          const uint8_t* px = row + (flip ? OW - 1 - j : j) * C;
          for (int64_t k = 0; k < C; ++k) out[j * C + k] = (float)((px[k] - mean) * inv);
        }
      }
    }
  });
}

}  // namespace cpuk
}  // namespace tl
