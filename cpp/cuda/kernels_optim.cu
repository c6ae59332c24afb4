// CUDA optimizer kernels, in place on weights and slots: sgd_update, momentum_update, adam_update, ema_update.
// The learning rate and step come from the device-resident hyper buffer, so a compiled program never changes.
#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// w (N) −= lr·g (N)
__global__ void sgdKernel(const float* __restrict__ g, const float* __restrict__ hyper, float* __restrict__ w,
                          int64_t n) {
  const float lr = hyper[kHyperLr];
  TL_GRID_STRIDE(i, n) w[i] -= lr * g[i];
}

TL_CUDA_KERNEL(sgd_update) {
  const int64_t N = c.args<SizeArgs>().N;
  if (N == 0) return;
  sgdKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(), N);
  TL_CUDA_LAUNCH_CHECK();
}

// v = m·v + g; w −= lr·v, or nesterov: w −= lr·(g + m·v)   (all (N))
__global__ void momentumKernel(const float* __restrict__ g, const float* __restrict__ hyper, float* __restrict__ w,
                               float* __restrict__ v, int64_t n, float m, bool nesterov) {
  const float lr = hyper[kHyperLr];
  TL_GRID_STRIDE(i, n) {
    const float vi = m * v[i] + g[i];
    v[i] = vi;
    w[i] -= nesterov ? lr * (g[i] + m * vi) : lr * vi;
  }
}

TL_CUDA_KERNEL(momentum_update) {
  const MomentumArgs& a = c.args<MomentumArgs>();
  const int64_t N = a.N;
  if (N == 0) return;
  momentumKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(),
                                                                   c.out[1].f32(), N, a.momentum, a.nesterov);
  TL_CUDA_LAUNCH_CHECK();
}

// TF AdamOptimizer: lr_t = lr·sqrt(1−b2^t)/(1−b1^t) in double (once per block); m, v, w (N) updated in f32.
// A step t < 1 (the step slot) leaves everything unchanged: the host cannot see hyper without a sync (see docs/gpu.md).
__global__ void adamKernel(const float* __restrict__ g, const float* __restrict__ hyper, float* __restrict__ w,
                           float* __restrict__ m, float* __restrict__ v, int64_t n, double b1, double b2, float eps) {
  __shared__ float lrtShared;
  const double t = hyper[kHyperStep];
  if (!(t >= 1.0)) return;  // uniform across the grid
  if (threadIdx.x == 0) lrtShared = (float)((double)hyper[kHyperLr] * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t)));
  __syncthreads();
  const float lrt = lrtShared;
  const float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1.0 - b1), ob2 = (float)(1.0 - b2);
  TL_GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float mi = fb1 * m[i] + ob1 * gi;
    const float vi = fb2 * v[i] + ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lrt * mi / (sqrtf(vi) + eps);
  }
}

TL_CUDA_KERNEL(adam_update) {
  const AdamArgs& a = c.args<AdamArgs>();
  const int64_t N = a.N;
  if (N == 0) return;
  adamKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(),
                                                               c.out[1].f32(), c.out[2].f32(), N, a.beta1, a.beta2,
                                                               (float)a.epsilon);
  TL_CUDA_LAUNCH_CHECK();
}

// shadow (N) = decay·shadow + (1−decay)·w (N)
__global__ void emaKernel(const float* __restrict__ w, float* __restrict__ s, int64_t n, float d, float od) {
  TL_GRID_STRIDE(i, n) s[i] = d * s[i] + od * w[i];
}

TL_CUDA_KERNEL(ema_update) {
  const EmaArgs& a = c.args<EmaArgs>();
  const int64_t N = a.N;
  const double decay = a.decay;
  if (N == 0) return;
  emaKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, (float)decay,
                                                              (float)(1.0 - decay));
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
