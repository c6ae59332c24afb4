// CUDA layer kernels: dense (cuBLAS SGEMM), activations, softmax cross-entropy, mean loss, accuracy (docs/kernels.md).
#include <algorithm>

#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// ---- dense ------------------------------------------------------------------------------------------------------

// in: x (B,I), W (I,O), b (O); out: y (B,O) = x·W + b
TL_CUDA_KERNEL(dense_forward) {
  const DenseArgs& a = c.args<DenseArgs>();
  const TensorRef &x = c.in[0], &W = c.in[1], &b = c.in[2], &y = c.out[0];
  if (a.B * a.O == 0) return;
  // Seed y with the bias rows, then accumulate x·W on top (beta = 1).
  launchBroadcastRows(c, b.f32(), y.f32(), a.B, a.O);
  gemmRowMajor(c, false, false, a.iB, a.iO, a.iI, x.f32(), a.iI, W.f32(), a.iO, 1.f, y.f32(), a.iO);
}

// in: A (M,K) [or (K,M) with transA], B (K,N) [or (N,K) with transB]; out: C (M,N) = op(A)·op(B)
TL_CUDA_KERNEL(matmul) {
  const MatmulArgs& a = c.args<MatmulArgs>();
  gemmRowMajor(c, a.transA, a.transB, a.M, a.N, a.K, c.in[0].f32(), a.transA ? a.M : a.K, c.in[1].f32(),
               a.transB ? a.K : a.N, 0.f, c.out[0].f32(), a.N);
}

// db (O) = Σ_rows dy (B,O), in double; one thread per column (coalesced across the warp). acc: db += instead.
__global__ void columnSumsKernel(const float* __restrict__ dy, float* __restrict__ db, int64_t rows, int64_t cols,
                                 bool acc) {
  TL_GRID_STRIDE(o, cols) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += dy[r * cols + o];
    db[o] = acc ? (float)((double)db[o] + s) : (float)s;
  }
}

// in: x (B,I), W (I,O), dy (B,O); out: dW (I,O), db (O) [, dx (B,I)]
TL_CUDA_KERNEL(dense_backward) {
  const DenseBackwardArgs& a = c.args<DenseBackwardArgs>();
  const int64_t B = a.B, O = a.O;
  const int iB = a.iB, iI = a.iI, iO = a.iO;
  const bool acc = a.acc, wantDx = a.wantDx;
  const TensorRef &x = c.in[0], &W = c.in[1], &dy = c.in[2], &dW = c.out[0], &db = c.out[1];
  CudaBackend& cb = cudaOf(c);
  // dW (I,O) = xᵀ (I,B) · dy (B,O)
  if (a.wantDw) gemmRowMajor(c, true, false, iI, iO, iB, x.f32(), iI, dy.f32(), iO, acc ? 1.f : 0.f, dW.f32(), iO);
  if (O > 0) {
    columnSumsKernel<<<gridFor(O), kThreads, 0, cb.stream()>>>(dy.f32(), db.f32(), B, O, acc);
    TL_CUDA_LAUNCH_CHECK();
  }
  // dx (B,I) = dy (B,O) · Wᵀ (O,I)
  if (wantDx) gemmRowMajor(c, false, true, iB, iI, iO, dy.f32(), iO, W.f32(), iO, 0.f, c.out[2].f32(), iI);
}

// ---- activations ----------------------------------------------------------------------------------------------

struct ReluF { __device__ float operator()(float x) const { return x < 0.f ? 0.f : x; } };  // NaN propagates
struct SigmoidF {  // exp of a non-positive number only: no overflow for large |x|
  __device__ float operator()(float x) const {
    const float e = expf(-fabsf(x));
    return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  }
};
struct TanhF { __device__ float operator()(float x) const { return tanhf(x); } };
struct ReluBackF { __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : 0.f; } };
struct SigmoidBackF { __device__ float operator()(float y, float dy) const { return dy * y * (1.f - y); } };
struct TanhBackF { __device__ float operator()(float y, float dy) const { return dy * (1.f - y * y); } };

// x (N) -> y (N)
template <class F> __global__ void unaryKernel(const float* x, float* y, int64_t n, F f) {
  TL_GRID_STRIDE(i, n) y[i] = f(x[i]);
}
// y (N), dy (N) -> dx (N); no __restrict__: dx may alias dy (each element is read before it is written)
template <class F> __global__ void binaryKernel(const float* a, const float* b, float* out, int64_t n, F f) {
  TL_GRID_STRIDE(i, n) out[i] = f(a[i], b[i]);
}

template <class F> static void unaryOp(KernelCall& c) {
  const int64_t N = c.args<SizeArgs>().N;
  if (N == 0) return;
  unaryKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), N, F{});
  TL_CUDA_LAUNCH_CHECK();
}
template <class F> static void backwardOp(KernelCall& c) {
  const int64_t N = c.args<SizeArgs>().N;
  if (N == 0) return;
  binaryKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.out[0].f32(), N, F{});
  TL_CUDA_LAUNCH_CHECK();
}

// ---- losses ---------------------------------------------------------------------------------------------------

// One block per row r of logits (B,C): probs row = softmax (max-subtracted); rowTerm[r] = logsumexp − logit[label].
// probs may alias logits: the label logit and the max are read before any write (blockReduce syncs).
__global__ void softmaxRowsKernel(const float* logits, const int32_t* __restrict__ labels, float* probs, int64_t C,
                                  double* __restrict__ rowTerm) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * C;
  float* p = probs + r * C;
  const float xl = x[labels[r]];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) mx = fmaxf(mx, x[j]);
  mx = blockReduce(mx, MaxOp{}, -INFINITY);
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const float e = expf(x[j] - mx);
    p[j] = e;
    s += e;
  }
  s = blockReduce(s, SumOp{}, 0.0);
  const float inv = (float)(1.0 / s);
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) p[j] *= inv;  // same thread wrote p[j] above
  if (threadIdx.x == 0) rowTerm[r] = ((double)mx + log(s)) - (double)xl;
}

struct RowTermF {
  const double* t;
  __device__ double operator()(int64_t i) const { return t[i]; }
};

// in: logits (B,C), labels (B), hyper; out: loss (1), probs (B,C)
TL_CUDA_KERNEL(softmax_xent_forward) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t B = a.B, C = a.C;
  const TensorRef &logits = c.in[0], &labels = c.in[1], &loss = c.out[0], &probs = c.out[1];
  TL_KCHECK(c, B <= INT32_MAX, "B=" << B << " is too large for this backend (one block per row)");
  checkIndicesOnDevice(c, a.labels);
  CudaBackend& cb = cudaOf(c);
  // Scratch layout: [reduction partials | B row terms].
  const size_t partialBytes = kMaxReduceBlocks * sizeof(double);
  char* base = static_cast<char*>(cb.scratch(partialBytes + (size_t)B * sizeof(double)));
  double* rowTerm = reinterpret_cast<double*>(base + partialBytes);
  if (B > 0) {
    softmaxRowsKernel<<<(unsigned)B, kThreads, 0, cb.stream()>>>(logits.f32(), labels.i32(), probs.f32(), C, rowTerm);
    TL_CUDA_LAUNCH_CHECK();
  }
  // loss[0] = gradScale · Σ_rows rowTerm (reduceToScalar puts its partials at the scratch base)
  ScalarEpilogue ep;
  ep.hyper = c.in[2].f32();
  reduceToScalar(c, B, RowTermF{rowTerm}, loss.f32(), ep);
}

// dlogits (B,C) = gradScale·(probs − onehot(labels)); no __restrict__ on probs/dl: they may alias
__global__ void softmaxBackKernel(const float* probs, const int32_t* __restrict__ labels, const float* hyper,
                                  float* dl, int64_t n, int64_t C) {
  const float w = hyper[kHyperGradScale];
  TL_GRID_STRIDE(i, n) {
    const int64_t r = i / C, j = i - r * C;
    dl[i] = w * (probs[i] - (j == labels[r] ? 1.f : 0.f));
  }
}

// in: probs (B,C), labels (B), hyper; out: dlogits (B,C)
TL_CUDA_KERNEL(softmax_xent_backward) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t C = a.C;
  const TensorRef &probs = c.in[0], &labels = c.in[1], &dl = c.out[0];
  checkIndicesOnDevice(c, a.labels);
  const int64_t n = a.B * C;
  if (n == 0) return;
  softmaxBackKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(probs.f32(), labels.i32(), c.in[2].f32(),
                                                                      dl.f32(), n, C);
  TL_CUDA_LAUNCH_CHECK();
}

struct ValueF {
  const float* x;
  __device__ double operator()(int64_t i) const { return (double)x[i]; }
};

// in: x (B,C), hyper; out: loss (1) = gradScale·Σ x / C
TL_CUDA_KERNEL(mean_forward) {
  const MeanArgs& a = c.args<MeanArgs>();
  ScalarEpilogue ep;
  ep.coef = 1.0 / (double)a.C;
  ep.hyper = c.in[1].f32();
  reduceToScalar(c, a.B * a.C, ValueF{c.in[0].f32()}, c.out[0].f32(), ep);
}

// dx (n) = gradScale / C
__global__ void meanBackKernel(const float* hyper, float* dx, int64_t n, int64_t C) {
  const float v = (float)((double)hyper[kHyperGradScale] / (double)C);
  TL_GRID_STRIDE(i, n) dx[i] = v;
}

// in: hyper; out: dx (B,C)
TL_CUDA_KERNEL(mean_backward) {
  const MeanArgs& a = c.args<MeanArgs>();
  const int64_t n = a.B * a.C;
  if (n == 0) return;
  meanBackKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), n, a.C);
  TL_CUDA_LAUNCH_CHECK();
}

// One warp per row of logits (B,C): first argmax (strict >, lowest index on ties); hits[0] counts label matches.
__global__ void argmaxHitsKernel(const float* __restrict__ logits, const int32_t* __restrict__ labels, int64_t B,
                                 int64_t C, unsigned long long* hits) {
  const int lane = threadIdx.x & 31;
  const int64_t warpsPerGrid = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < B; r += warpsPerGrid) {
    const float* x = logits + r * C;
    float bv = 0.f;
    int64_t bi = -1;  // -1: this lane saw no element yet
    for (int64_t j = lane; j < C; j += 32)
      if (bi < 0 || x[j] > bv) { bv = x[j]; bi = j; }
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, bv, off);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, off);
      if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    if (lane == 0 && bi == (int64_t)labels[r]) atomicAdd(hits, 1ull);
  }
}

__global__ void hitsToFloatKernel(const unsigned long long* hits, float* count) { count[0] = (float)hits[0]; }

// in: logits (B,C), labels (B); out: count (1) f32
TL_CUDA_KERNEL(accuracy_count) {
  const LabelledArgs& a = c.args<LabelledArgs>();
  const int64_t B = a.B, C = a.C;
  checkIndicesOnDevice(c, a.labels);
  CudaBackend& cb = cudaOf(c);
  auto* hits = static_cast<unsigned long long*>(cb.scratch(sizeof(unsigned long long)));
  TL_CUDA_CHECK(cudaMemsetAsync(hits, 0, sizeof(unsigned long long), cb.stream()));
  if (B > 0) {
    const int rowsPerBlock = kThreads / 32;
    const int64_t blocks = std::min<int64_t>((B + rowsPerBlock - 1) / rowsPerBlock, kMaxGrid);
    argmaxHitsKernel<<<(unsigned)blocks, kThreads, 0, cb.stream()>>>(c.in[0].f32(), c.in[1].i32(), B, C, hits);
    TL_CUDA_LAUNCH_CHECK();
  }
  hitsToFloatKernel<<<1, 1, 0, cb.stream()>>>(hits, c.out[0].f32());
  TL_CUDA_LAUNCH_CHECK();
}

TL_CUDA_KERNEL(relu_forward) { unaryOp<ReluF>(c); }
TL_CUDA_KERNEL(relu_backward) { backwardOp<ReluBackF>(c); }
TL_CUDA_KERNEL(sigmoid_forward) { unaryOp<SigmoidF>(c); }
TL_CUDA_KERNEL(sigmoid_backward) { backwardOp<SigmoidBackF>(c); }
TL_CUDA_KERNEL(tanh_forward) { unaryOp<TanhF>(c); }
TL_CUDA_KERNEL(tanh_backward) { backwardOp<TanhBackF>(c); }

}  // namespace cudak
}  // namespace tl
