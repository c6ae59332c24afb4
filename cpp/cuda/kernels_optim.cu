// CUDA optimizer kernels, in place on weights and slots: sgd_update, momentum_update, adam_update, ema_update, and
// the fused tail fused_{sgd,momentum,adam}_update (Note [Fused parameter tail] in src/model/passes.ts).
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

// ---- the fused tail: clip by the global norm, update, EMA, in one kernel per parameter -----------------------------

// What a fused update adds: the clip norm (0: none) and the EMA (shadow == nullptr: none).
struct FusedTail {
  double clipNorm;
  float decay, oneMinusDecay;
  float* shadow;
};

FusedTail fusedTail(KernelCall& c, const TailArgs& a, size_t outputs) {
  return {a.clipNorm, (float)a.decay, (float)(1.0 - a.decay), a.ema ? c.out[outputs].f32() : nullptr};
}

// clip_by_norm's factor, read from the device-resident global squared norm: false leaves g alone.
__device__ inline bool clipFactorOnDevice(const float* s, double clipNorm, float* f) {
  if (!(clipNorm > 0)) return false;
  const double sq = s[0];
  if (sq == 0.0) return false;
  const double r = clipNorm / sqrt(sq);
  if (r >= 1.0) return false;  // a NaN norm scales by NaN, as clip_by_norm
  *f = (float)r;
  return true;
}

// g[i] clipped (and written back when the clip acts)
__device__ inline float clippedGrad(float* g, int64_t i, bool clip, float f) {
  float gi = g[i];
  if (clip) {
    gi *= f;
    g[i] = gi;
  }
  return gi;
}

__device__ inline void emaStep(const FusedTail& t, int64_t i, float wi) {
  if (t.shadow) t.shadow[i] = t.decay * t.shadow[i] + t.oneMinusDecay * wi;
}

__global__ void fusedSgdKernel(const float* s, const float* __restrict__ hyper, float* __restrict__ g,
                               float* __restrict__ w, int64_t n, FusedTail t) {
  float f = 1;
  const bool clip = clipFactorOnDevice(s, t.clipNorm, &f);
  const float lr = hyper[kHyperLr];
  TL_GRID_STRIDE(i, n) {
    const float wi = w[i] - lr * clippedGrad(g, i, clip, f);
    w[i] = wi;
    emaStep(t, i, wi);
  }
}

TL_CUDA_KERNEL(fused_sgd_update) {
  const FusedSgdArgs& a = c.args<FusedSgdArgs>();
  if (a.N == 0) return;
  fusedSgdKernel<<<gridFor(a.N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(),
                                                                     c.out[1].f32(), a.N, fusedTail(c, a.tail, 2));
  TL_CUDA_LAUNCH_CHECK();
}

__global__ void fusedMomentumKernel(const float* s, const float* __restrict__ hyper, float* __restrict__ g,
                                    float* __restrict__ w, float* __restrict__ v, int64_t n, float m, bool nesterov,
                                    FusedTail t) {
  float f = 1;
  const bool clip = clipFactorOnDevice(s, t.clipNorm, &f);
  const float lr = hyper[kHyperLr];
  TL_GRID_STRIDE(i, n) {
    const float gi = clippedGrad(g, i, clip, f);
    const float vi = m * v[i] + gi;
    v[i] = vi;
    const float wi = w[i] - (nesterov ? lr * (gi + m * vi) : lr * vi);
    w[i] = wi;
    emaStep(t, i, wi);
  }
}

TL_CUDA_KERNEL(fused_momentum_update) {
  const FusedMomentumArgs& a = c.args<FusedMomentumArgs>();
  if (a.N == 0) return;
  fusedMomentumKernel<<<gridFor(a.N), kThreads, 0, cudaOf(c).stream()>>>(
      c.in[0].f32(), c.in[1].f32(), c.out[0].f32(), c.out[1].f32(), c.out[2].f32(), a.N, a.momentum, a.nesterov,
      fusedTail(c, a.tail, 3));
  TL_CUDA_LAUNCH_CHECK();
}

// As adamKernel: a step t < 1 leaves everything unchanged (the host cannot see hyper without a sync).
__global__ void fusedAdamKernel(const float* s, const float* __restrict__ hyper, float* __restrict__ g,
                                float* __restrict__ w, float* __restrict__ m, float* __restrict__ v, int64_t n,
                                double b1, double b2, float eps, FusedTail t) {
  __shared__ float lrtShared;
  const double step = hyper[kHyperStep];
  if (!(step >= 1.0)) return;  // uniform across the grid
  if (threadIdx.x == 0) lrtShared = (float)((double)hyper[kHyperLr] * sqrt(1.0 - pow(b2, step)) / (1.0 - pow(b1, step)));
  __syncthreads();
  const float lrt = lrtShared;
  const float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1.0 - b1), ob2 = (float)(1.0 - b2);
  float f = 1;
  const bool clip = clipFactorOnDevice(s, t.clipNorm, &f);
  TL_GRID_STRIDE(i, n) {
    const float gi = clippedGrad(g, i, clip, f);
    const float mi = fb1 * m[i] + ob1 * gi;
    const float vi = fb2 * v[i] + ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float wi = w[i] - lrt * mi / (sqrtf(vi) + eps);
    w[i] = wi;
    emaStep(t, i, wi);
  }
}

TL_CUDA_KERNEL(fused_adam_update) {
  const FusedAdamArgs& a = c.args<FusedAdamArgs>();
  if (a.N == 0) return;
  fusedAdamKernel<<<gridFor(a.N), kThreads, 0, cudaOf(c).stream()>>>(
      c.in[0].f32(), c.in[1].f32(), c.out[0].f32(), c.out[1].f32(), c.out[2].f32(), c.out[3].f32(), a.N, a.beta1,
      a.beta2, (float)a.epsilon, fusedTail(c, a.tail, 4));
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
