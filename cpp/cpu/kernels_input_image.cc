// CPU image input kernel: crop, optional horizontal flip and per-image standardisation of u8 NHWC images, gathered
// by an index batch (docs/kernels.md, "Input"). The CIFAR-10 tutorial's preprocessing, done where the bytes live.
#include <algorithm>
#include <cmath>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// in: src (R,H,W,C) u8, idx (B) i32, params (B,3) i32 [dy, dx, flip]; out: y (B,OH,OW,C) f32
static void crop_flip_standardize_u8(KernelCall& c) {
  c.expectArity(3, 1, 1);
  const int64_t B = dim(c, "B"), R = dim(c, "R"), H = dim(c, "H"), W = dim(c, "W"), C = dim(c, "C");
  const int64_t OH = dim(c, "OH"), OW = dim(c, "OW");
  TL_KCHECK(c, OH >= 1 && OW >= 1 && OH <= H && OW <= W,
            "crop OH=" << OH << " OW=" << OW << " must be at least 1x1 and fit the image H=" << H << " W=" << W);
  const int64_t img = mul(c, mul(c, H, W), C), N = mul(c, mul(c, OH, OW), C);
  c.expectType(c.in[0], "src", DType::U8);
  c.expectSize(c.in[0], "src", mul(c, R, img), "(R,H,W,C)");
  c.expectType(c.in[1], "idx", DType::I32);
  c.expectSize(c.in[1], "idx", B, "(B)");
  c.expectType(c.in[2], "params", DType::I32);
  c.expectSize(c.in[2], "params", mul(c, B, 3), "(B,3)");
  c.expectType(c.out[0], "y", DType::F32);
  c.expectSize(c.out[0], "y", mul(c, B, N), "(B,OH,OW,C)");
  const int32_t* idx = c.in[1].i32();
  const int32_t* prm = c.in[2].i32();
  checkIndices(c, idx, B, R, "index", "b", "R");
  for (int64_t b = 0; b < B; ++b) {
    const int32_t dy = prm[3 * b], dx = prm[3 * b + 1], flip = prm[3 * b + 2];
    TL_KCHECK(c, dy >= 0 && dy <= H - OH && dx >= 0 && dx <= W - OW && (flip == 0 || flip == 1),
              "params at b=" << b << " are [dy=" << dy << ", dx=" << dx << ", flip=" << flip << "], expected dy in [0, "
                             << H - OH << "], dx in [0, " << W - OW << "], flip 0 or 1");
  }
  if (N == 0) return;
  const uint8_t* src = c.in[0].u8();
  float* y = c.out[0].f32();
  const double minStd = 1.0 / std::sqrt((double)N);
  const int64_t rowLen = OW * C;
  for (int64_t b = 0; b < B; ++b) {
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
}

void registerImageInputKernels(KernelTable& t) { t.fns["crop_flip_standardize_u8"] = crop_flip_standardize_u8; }

}  // namespace cpuk
}  // namespace tl
