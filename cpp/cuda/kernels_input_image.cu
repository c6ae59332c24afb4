// CUDA image input kernel: crop, optional horizontal flip and per-image standardisation of u8 NHWC images, gathered
// by an index batch (docs/kernels.md, "Input"). One block per image; the statistics are summed in double in a fixed
// order, so results are reproducible run to run.
#include <cmath>
#include <vector>

#include "kernels_common.cuh"

namespace tl {
namespace cudak {

struct CropGeom {
  int64_t H, W, C, OH, OW, img, N;
};

// Block b: y[b] = (crop(src[idx[b]], dy, dx, flip) − mean) / max(std, 1/sqrt(N)).
__global__ void cropFlipStandardizeKernel(const uint8_t* __restrict__ src, const int32_t* __restrict__ idx,
                                          const int32_t* __restrict__ prm, float* __restrict__ y, CropGeom g) {
  const int64_t b = blockIdx.x;
  const int32_t dy = prm[3 * b], dx = prm[3 * b + 1], flip = prm[3 * b + 2];
  const uint8_t* im = src + (int64_t)idx[b] * g.img;
  const int64_t rowLen = g.OW * g.C;
  auto at = [&](int64_t k) {  // k-th value of the (unflipped) crop, row-major (i, j, c)
    const int64_t i = k / rowLen, r = k - i * rowLen;
    return (double)im[((dy + i) * g.W + dx) * g.C + r];
  };
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < g.N; k += blockDim.x) s += at(k);
  const double mean = blockReduce(s, SumOp{}, 0.0) / (double)g.N;
  double ss = 0.0;
  for (int64_t k = threadIdx.x; k < g.N; k += blockDim.x) {
    const double d = at(k) - mean;
    ss += d * d;
  }
  const double var = blockReduce(ss, SumOp{}, 0.0) / (double)g.N;
  const double inv = 1.0 / fmax(sqrt(var), 1.0 / sqrt((double)g.N));
  float* yb = y + b * g.N;
  for (int64_t k = threadIdx.x; k < g.N; k += blockDim.x) {
    const int64_t i = k / rowLen, r = k - i * rowLen, j = r / g.C, ch = r - j * g.C;
    const int64_t sj = flip ? g.OW - 1 - j : j;
    yb[k] = (float)(((double)im[((dy + i) * g.W + dx + sj) * g.C + ch] - mean) * inv);
  }
}

// in: src (R,H,W,C) u8, idx (B) i32, params (B,3) i32 [dy, dx, flip]; out: y (B,OH,OW,C) f32
TL_CUDA_KERNEL(crop_flip_standardize_u8) {
  const CropArgs& a = c.args<CropArgs>();
  const int64_t B = a.B;
  checkIndicesOnDevice(c, a.idx);
  if (B == 0 || a.N == 0) return;
  // The params are 3 ints per image: read them back (one sync) and check them on the host.
  std::vector<int32_t> prm((size_t)(3 * B));
  cudaOf(c).readBack(prm.data(), c.in[2].i32(), sizeof(int32_t) * prm.size());
  checkCropParams(c, a, prm.data());
  TL_KCHECK(c, B <= INT32_MAX, "B=" << B << " exceeds the grid");
  cropFlipStandardizeKernel<<<(unsigned)B, kThreads, 0, cudaOf(c).stream()>>>(
      c.in[0].u8(), c.in[1].i32(), c.in[2].i32(), c.out[0].f32(), CropGeom{a.H, a.W, a.C, a.OH, a.OW, a.img, a.N});
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
