// CUDA input kernels: gather dataset rows (u8 scaled to f32, or f32) and u8 labels by an index batch.
// Indices are range-checked on the device first (one stream sync), so a bad batch throws and writes nothing.
#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// y (B,D) = src (R,D)[idx[b]] · scale, as f32
template <class T>
__global__ void gatherRowsKernel(const T* __restrict__ src, const int32_t* __restrict__ idx, float* __restrict__ y,
                                 int64_t n, int64_t D, float scale, bool scaled) {
  TL_GRID_STRIDE(i, n) {
    const int64_t b = i / D, j = i - b * D;
    const float v = (float)src[(int64_t)idx[b] * D + j];
    y[i] = scaled ? v * scale : v;
  }
}

// in: src (R,D) u8, idx (B) i32; out: y (B,D) f32 = src[idx[b]]·scale
TL_CUDA_KERNEL(gather_rows_u8) {
  const GatherRowsArgs& a = c.args<GatherRowsArgs>();
  const float s = a.scale;
  checkIndicesOnDevice(c, a.idx);
  const int64_t n = a.B * a.D, D = a.D;
  if (n == 0) return;
  gatherRowsKernel<uint8_t><<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].u8(), c.in[1].i32(),
                                                                             c.out[0].f32(), n, D, s, true);
  TL_CUDA_LAUNCH_CHECK();
}

// in: src (R,D) f32, idx (B) i32; out: y (B,D) = src[idx[b]] (bit-exact: no scaling)
TL_CUDA_KERNEL(gather_rows_f32) {
  const GatherRowsArgs& a = c.args<GatherRowsArgs>();
  checkIndicesOnDevice(c, a.idx);
  const int64_t n = a.B * a.D, D = a.D;
  if (n == 0) return;
  gatherRowsKernel<float><<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].i32(),
                                                                           c.out[0].f32(), n, D, 1.f, false);
  TL_CUDA_LAUNCH_CHECK();
}

// y (B) i32 = src (R) u8 [idx[b]]
__global__ void gatherLabelsKernel(const uint8_t* __restrict__ src, const int32_t* __restrict__ idx,
                                   int32_t* __restrict__ y, int64_t n) {
  TL_GRID_STRIDE(b, n) y[b] = src[idx[b]];
}

// in: src (R) u8, idx (B) i32; out: y (B) i32
TL_CUDA_KERNEL(gather_labels_u8) {
  const GatherLabelsArgs& a = c.args<GatherLabelsArgs>();
  const int64_t B = a.B;
  checkIndicesOnDevice(c, a.idx);
  if (B == 0) return;
  gatherLabelsKernel<<<gridFor(B), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].u8(), c.in[1].i32(), c.out[0].i32(), B);
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
