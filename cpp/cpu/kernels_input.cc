// CPU input kernels: gather dataset rows (u8 scaled to f32, or f32) and u8 labels by an index batch.
#include <cstring>

#include "isa.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

namespace {

// y[b] = src[idx[b]]·scale: u8 → f32 in vectors on the ISA path (Note [Kernel ISA]). The rows are scattered over a
// data set far larger than the caches (and its pages beyond the TLB), so each row's lines are prefetched kAhead rows
// ahead: the conversion of row b overlaps the memory latency (and page walks) of the next kAhead rows. One row ahead
// left the gather waiting on a page walk and DRAM once per row (~45 us for 128 rows of 784 at best; issue 16).
struct GatherU8 {
  static constexpr int64_t kAhead = 8;
  TL_ISA_INLINE static void prefetchRow(const uint8_t* row, int64_t D) {
    for (int64_t j = 0; j < D; j += 64) __builtin_prefetch(row + j);
    if (D > 0) __builtin_prefetch(row + D - 1);  // the row's last line when it is not 64-byte aligned
  }
  TL_ISA_INLINE static void run(const uint8_t* src, const int32_t* idx, float* y, int64_t B, int64_t D, float s) {
    for (int64_t b = 0; b < B && b < kAhead; ++b) prefetchRow(src + (int64_t)idx[b] * D, D);
    for (int64_t b = 0; b < B; ++b) {
      if (b + kAhead < B) prefetchRow(src + (int64_t)idx[b + kAhead] * D, D);
      const uint8_t* row = src + (int64_t)idx[b] * D;
      float* yb = y + b * D;
      for (int64_t j = 0; j < D; ++j) yb[j] = (float)row[j] * s;
    }
  }
};

}  // namespace

// A gather's rows sit anywhere in a data set far larger than the caches, so it waits on memory for each row: unlike
// a streaming pass it gains from a second thread well below kFanOutFloats (bench/mnist-profile.ts, MNIST's 128 rows
// of 784, 100K floats, 2 GEMM threads: 37-38 us on the device thread alone, 23-24 us spread over both; the rows are
// independent, so the bits are the same on any thread count).
constexpr int64_t kGatherFanOutFloats = int64_t(1) << 16;

// in: src (R,D) u8, idx (B) i32; out: y (B,D) f32 = src[idx[b]]·scale
TL_CPU_KERNEL(gather_rows_u8) {
  const GatherRowsArgs& a = c.args<GatherRowsArgs>();
  checkIndices(c, a.idx);
  const uint8_t* src = c.in[0].u8();
  const int32_t* idx = a.idx.values(c);
  float* y = c.out[0].f32();
  // rows are independent: any cut over the device's threads gives the same bits
  forEachRowBlock(a.B, a.D, [&](int64_t b0, int64_t b1) {
    perIsa<GatherU8>(src, idx + b0, y + b0 * a.D, b1 - b0, a.D, a.scale);
  }, kGatherFanOutFloats);
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
