// CUDA convolution, pooling, LRN and dropout kernels, NHWC (docs/kernels.md, "Convolution and pooling").
// conv2d: im2col into device scratch + cuBLAS SGEMM over chunks of whole images. Every reduction has a fixed order
// (no float atomics), so results are bit-reproducible run to run.
#include <algorithm>

#include "kernels_common.cuh"

namespace tl {
namespace cudak {

// Plain-old-data copy of the geometry for kernel arguments.
struct Geom {
  int64_t B, H, W, C, KH, KW, SH, SW, OH, OW, padTop, padLeft;
};
static Geom toGeom(const ConvGeom& g) {
  return Geom{g.B, g.H, g.W, g.C, g.KH, g.KW, g.SH, g.SW, g.OH, g.OW, g.padTop, g.padLeft};
}

// ---- conv2d ------------------------------------------------------------------------------------------------------

// col (nb·OH·OW, KH·KW·C) for images [b0, b0 + nb): row (b, oh, ow), column (kh, kw, c); padding cells are 0.
__global__ void im2colKernel(const float* __restrict__ x, float* __restrict__ col, Geom g, int64_t b0, int64_t n) {
  const int64_t kk = g.KH * g.KW * g.C;
  TL_GRID_STRIDE(i, n) {
    const int64_t row = i / kk, k = i - row * kk;
    const int64_t ch = k % g.C, kw = (k / g.C) % g.KW, kh = k / (g.C * g.KW);
    const int64_t ow = row % g.OW, oh = (row / g.OW) % g.OH, b = b0 + row / (g.OW * g.OH);
    const int64_t ih = oh * g.SH - g.padTop + kh, iw = ow * g.SW - g.padLeft + kw;
    col[i] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((b * g.H + ih) * g.W + iw) * g.C + ch] : 0.f;
  }
}

// dx for images [b0, b0 + nb) from their dcol: each input cell gathers the column entries that read it, in a fixed
// (kh, kw) order, so there are no atomics and every dx element is written.
__global__ void col2imKernel(const float* __restrict__ dcol, float* __restrict__ dx, Geom g, int64_t b0, int64_t n) {
  const int64_t kk = g.KH * g.KW * g.C;
  TL_GRID_STRIDE(i, n) {
    const int64_t ch = i % g.C, iw = (i / g.C) % g.W, ih = (i / (g.C * g.W)) % g.H, bl = i / (g.C * g.W * g.H);
    float s = 0.f;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t t = ih + g.padTop - kh;  // = oh·SH
      if (t < 0 || t % g.SH != 0) continue;
      const int64_t oh = t / g.SH;
      if (oh >= g.OH) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t u = iw + g.padLeft - kw;
        if (u < 0 || u % g.SW != 0) continue;
        const int64_t ow = u / g.SW;
        if (ow >= g.OW) continue;
        s += dcol[((bl * g.OH + oh) * g.OW + ow) * kk + (kh * g.KW + kw) * g.C + ch];
      }
    }
    dx[b0 * g.H * g.W * g.C + i] = s;
  }
}

// One block per column k of dy (rows, K): db[k] (+)= Σ_rows dy[., k], in double, fixed reduction order.
__global__ void convBiasGradKernel(const float* __restrict__ dy, float* __restrict__ db, int64_t rows, int64_t K,
                                   bool acc) {
  const int64_t k = blockIdx.x;
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += dy[r * K + k];
  s = blockReduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) db[k] = acc ? (float)((double)db[k] + s) : (float)s;
}

// Images per chunk so that one column matrix stays within ~128 MB of scratch.
static int64_t imagesPerChunk(const ConvGeom& g) {
  const int64_t perImage = std::max<int64_t>(1, g.OH * g.OW * g.KH * g.KW * g.C);
  const int64_t budget = int64_t(32) << 20;  // floats
  return std::max<int64_t>(1, std::min<int64_t>(g.B, budget / perImage));
}

// in: x (B,H,W,C), w (KH,KW,C,K), b (K); out: y (B,OH,OW,K)
TL_CUDA_KERNEL(conv2d_forward) {
  const ConvArgs& a = c.args<ConvArgs>();
  const ConvGeom& g = a.g;
  const int64_t K = a.K, M = a.M, kk = a.kk;
  const int iK = a.iK, iKK = a.iKK;
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  if (M * K == 0) return;
  CudaBackend& cb = cudaOf(c);
  launchBroadcastRows(c, b.f32(), y.f32(), M, K);
  if (kk == 0) return;
  const Geom gg = toGeom(g);
  const int64_t per = g.OH * g.OW, step = imagesPerChunk(g);
  float* col = static_cast<float*>(cb.scratch(sizeof(float) * (size_t)(step * per * kk)));
  for (int64_t b0 = 0; b0 < g.B; b0 += step) {
    const int64_t nb = std::min(step, g.B - b0), m = nb * per;
    im2colKernel<<<gridFor(m * kk), kThreads, 0, cb.stream()>>>(x.f32(), col, gg, b0, m * kk);
    TL_CUDA_LAUNCH_CHECK();
    gemmRowMajor(c, false, false, (int)m, iK, iKK, col, iKK, w.f32(), iK, 1.f, y.f32() + b0 * per * K, iK);
  }
}

// in: x (B,H,W,C), w (KH,KW,C,K), dy (B,OH,OW,K); out: dw (KH,KW,C,K), db (K) [, dx (B,H,W,C)]
TL_CUDA_KERNEL(conv2d_backward) {
  const ConvBackwardArgs& a = c.args<ConvBackwardArgs>();
  const ConvGeom& g = a.g;
  const int64_t K = a.K, M = a.M, kk = a.kk;
  const int iK = a.iK, iKK = a.iKK;
  const bool acc = a.acc, wantDx = a.wantDx;
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2], &dw = c.out[0], &db = c.out[1];
  CudaBackend& cb = cudaOf(c);
  if (K > 0) {
    TL_KCHECK(c, K <= INT32_MAX, "K=" << K << " is too large for this backend (one block per channel)");
    convBiasGradKernel<<<(unsigned)K, kThreads, 0, cb.stream()>>>(dy.f32(), db.f32(), M, K, acc);
    TL_CUDA_LAUNCH_CHECK();
  }
  float* pdx = wantDx ? c.out[2].f32() : nullptr;
  if (K == 0 || M == 0 || kk == 0) {  // empty sums: dw = 0 (or unchanged), dx = 0
    if (!acc && kk * K > 0) TL_CUDA_CHECK(cudaMemsetAsync(dw.f32(), 0, sizeof(float) * (size_t)(kk * K), cb.stream()));
    if (wantDx && g.inNumel() > 0)
      TL_CUDA_CHECK(cudaMemsetAsync(pdx, 0, sizeof(float) * (size_t)g.inNumel(), cb.stream()));
    return;
  }
  const Geom gg = toGeom(g);
  const int64_t per = g.OH * g.OW, step = imagesPerChunk(g), colFloats = step * per * kk;
  float* col = static_cast<float*>(cb.scratch(sizeof(float) * (size_t)(wantDx ? 2 * colFloats : colFloats)));
  float* dcol = col + colFloats;
  const int64_t imageIn = g.H * g.W * g.C;
  for (int64_t b0 = 0; b0 < g.B; b0 += step) {
    const int64_t nb = std::min(step, g.B - b0), m = nb * per;
    const float* dyc = dy.f32() + b0 * per * K;
    im2colKernel<<<gridFor(m * kk), kThreads, 0, cb.stream()>>>(x.f32(), col, gg, b0, m * kk);
    TL_CUDA_LAUNCH_CHECK();
    // dw (KK,K) (+)= colᵀ (KK,m) · dy (m,K); chunks after the first always add
    gemmRowMajor(c, true, false, iKK, iK, (int)m, col, iKK, dyc, iK, (acc || b0 > 0) ? 1.f : 0.f, dw.f32(), iK);
    if (wantDx) {
      // dcol (m,KK) = dy (m,K) · wᵀ (K,KK), then gathered back onto dx
      gemmRowMajor(c, false, true, (int)m, iKK, iK, dyc, iK, w.f32(), iK, 0.f, dcol, iKK);
      if (nb * imageIn > 0) {
        col2imKernel<<<gridFor(nb * imageIn), kThreads, 0, cb.stream()>>>(dcol, pdx, gg, b0, nb * imageIn);
        TL_CUDA_LAUNCH_CHECK();
      }
    }
  }
}

// ---- max pooling -------------------------------------------------------------------------------------------------

// One thread per output (b, oh, ow, c): max over the window's input cells in (kh, kw) order, strict > (first max).
__global__ void maxpoolForwardKernel(const float* __restrict__ x, float* __restrict__ y, int32_t* __restrict__ am,
                                     Geom g, int64_t n) {
  TL_GRID_STRIDE(o, n) {
    const int64_t ch = o % g.C, ow = (o / g.C) % g.OW, oh = (o / (g.C * g.OW)) % g.OH, b = o / (g.C * g.OW * g.OH);
    const int64_t ih0 = oh * g.SH - g.padTop, iw0 = ow * g.SW - g.padLeft;
    const int64_t h0 = ih0 < 0 ? 0 : ih0, h1 = ih0 + g.KH < g.H ? ih0 + g.KH : g.H;
    const int64_t w0 = iw0 < 0 ? 0 : iw0, w1 = iw0 + g.KW < g.W ? iw0 + g.KW : g.W;
    float best = 0.f;
    int64_t arg = -1;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) {
        const int64_t xi = ((b * g.H + ih) * g.W + iw) * g.C + ch;
        const float v = x[xi];
        if (arg < 0 || v > best) { best = v; arg = xi; }
      }
    y[o] = best;
    am[o] = (int32_t)arg;
  }
}

// firstBad = the lowest output index whose argmax is not a cell of its own window.
__global__ void argmaxWindowCheckKernel(const int32_t* __restrict__ am, Geom g, int64_t n,
                                        unsigned long long* firstBad) {
  const int64_t nIn = g.B * g.H * g.W * g.C;
  TL_GRID_STRIDE(o, n) {
    const int64_t ch = o % g.C, ow = (o / g.C) % g.OW, oh = (o / (g.C * g.OW)) % g.OH, b = o / (g.C * g.OW * g.OH);
    const int64_t a = am[o];
    const int64_t ac = a % g.C, aw = (a / g.C) % g.W, ah = (a / (g.C * g.W)) % g.H, ab = a / (g.C * g.W * g.H);
    const int64_t ih0 = oh * g.SH - g.padTop, iw0 = ow * g.SW - g.padLeft;
    const bool ok = a >= 0 && a < nIn && ac == ch && ab == b && ah >= ih0 && ah < ih0 + g.KH && aw >= iw0 &&
                    aw < iw0 + g.KW;
    if (!ok) atomicMin(firstBad, (unsigned long long)o);
  }
}

// One thread per input cell: dx = Σ dy[o] over the outputs o whose window holds the cell and whose argmax is it,
// in (oh, ow) order. No atomics, every dx element written.
__global__ void maxpoolBackwardKernel(const float* __restrict__ dy, const int32_t* __restrict__ am,
                                      float* __restrict__ dx, Geom g, int64_t n) {
  TL_GRID_STRIDE(i, n) {
    const int64_t ch = i % g.C, iw = (i / g.C) % g.W, ih = (i / (g.C * g.W)) % g.H, b = i / (g.C * g.W * g.H);
    // oh with oh·SH − padTop <= ih < oh·SH − padTop + KH
    const int64_t th = ih + g.padTop, tw = iw + g.padLeft;
    const int64_t ohLo = th - g.KH + 1 <= 0 ? 0 : (th - g.KH + 1 + g.SH - 1) / g.SH;
    const int64_t ohHi = th / g.SH < g.OH - 1 ? th / g.SH : g.OH - 1;
    const int64_t owLo = tw - g.KW + 1 <= 0 ? 0 : (tw - g.KW + 1 + g.SW - 1) / g.SW;
    const int64_t owHi = tw / g.SW < g.OW - 1 ? tw / g.SW : g.OW - 1;
    float s = 0.f;
    for (int64_t oh = ohLo; oh <= ohHi; ++oh)
      for (int64_t ow = owLo; ow <= owHi; ++ow) {
        const int64_t o = ((b * g.OH + oh) * g.OW + ow) * g.C + ch;
        if (am[o] == i) s += dy[o];
      }
    dx[i] = s;
  }
}

// in: x (B,H,W,C); out: y (B,OH,OW,C), argmax (B,OH,OW,C) i32
TL_CUDA_KERNEL(maxpool_forward) {
  const PoolArgs& a = c.args<PoolArgs>();
  const TensorRef &x = c.in[0], &y = c.out[0], &am = c.out[1];
  const int64_t nOut = a.nOut;
  if (nOut == 0) return;
  maxpoolForwardKernel<<<gridFor(nOut), kThreads, 0, cudaOf(c).stream()>>>(x.f32(), y.f32(), am.i32(), toGeom(a.g),
                                                                              nOut);
  TL_CUDA_LAUNCH_CHECK();
}

// in: dy (B,OH,OW,C), argmax (B,OH,OW,C) i32; out: dx (B,H,W,C). The argmax check costs one stream sync.
TL_CUDA_KERNEL(maxpool_backward) {
  const PoolArgs& a = c.args<PoolArgs>();
  const TensorRef &dy = c.in[0], &am = c.in[1], &dx = c.out[0];
  const int64_t nOut = a.nOut, nIn = a.g.inNumel();
  CudaBackend& cb = cudaOf(c);
  const Geom gg = toGeom(a.g);
  if (nOut > 0) {
    auto* firstBad = static_cast<unsigned long long*>(cb.scratch(sizeof(unsigned long long)));
    TL_CUDA_CHECK(cudaMemsetAsync(firstBad, 0xff, sizeof(unsigned long long), cb.stream()));
    argmaxWindowCheckKernel<<<gridFor(nOut), kThreads, 0, cb.stream()>>>(am.i32(), gg, nOut, firstBad);
    TL_CUDA_LAUNCH_CHECK();
    unsigned long long bad = 0;
    cb.readBack(&bad, firstBad, sizeof bad);  // syncs the stream
    if (bad != ~0ull) {
      int32_t value = 0;
      cb.readBack(&value, am.i32() + bad, sizeof value);
      TL_KCHECK(c, false, "argmax at o=" << bad << " is " << value << ", not a cell of that output's window; pass "
                                         << "maxpool_forward's argmax with the same attributes");
    }
  }
  if (nIn == 0) return;
  maxpoolBackwardKernel<<<gridFor(nIn), kThreads, 0, cb.stream()>>>(dy.f32(), am.i32(), dx.f32(), gg, nIn);
  TL_CUDA_LAUNCH_CHECK();
}

// ---- local response normalisation ------------------------------------------------------------------------------

// The LRN attributes as the kernels read them: bias, alpha and beta rounded to f32.
struct LrnF {
  int64_t N, C, r;
  float bias, alpha, beta;
};

static LrnF lrnF(const LrnArgs& a) { return LrnF{a.N, a.C, a.r, (float)a.bias, (float)a.alpha, (float)a.beta}; }

// One thread per (n, c): scale = bias + alpha·Σ_{|c'−c| <= r} x², y = x·scale^−beta
__global__ void lrnForwardKernel(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ scale,
                                 LrnF p, int64_t n) {
  TL_GRID_STRIDE(i, n) {
    const int64_t ch = i % p.C, row = i - ch;
    const int64_t lo = ch - p.r < 0 ? 0 : ch - p.r, hi = ch + p.r > p.C - 1 ? p.C - 1 : ch + p.r;
    float ss = 0.f;
    for (int64_t j = lo; j <= hi; ++j) { const float v = x[row + j]; ss += v * v; }
    const float s = p.bias + p.alpha * ss;
    scale[i] = s;
    y[i] = x[i] * powf(s, -p.beta);
  }
}

// One thread per (n, j): dx = dy·scale^−beta − 2·alpha·beta·x·Σ_{|c−j| <= r} dy[c]·y[c]/scale[c]
__global__ void lrnBackwardKernel(const float* __restrict__ x, const float* __restrict__ y,
                                  const float* __restrict__ dy, const float* __restrict__ scale,
                                  float* __restrict__ dx, LrnF p, int64_t n) {
  TL_GRID_STRIDE(i, n) {
    const int64_t ch = i % p.C, row = i - ch;
    const int64_t lo = ch - p.r < 0 ? 0 : ch - p.r, hi = ch + p.r > p.C - 1 ? p.C - 1 : ch + p.r;
    float t = 0.f;
    for (int64_t j = lo; j <= hi; ++j) t += dy[row + j] * y[row + j] / scale[row + j];
    dx[i] = dy[i] * powf(scale[i], -p.beta) - 2.f * p.alpha * p.beta * x[i] * t;
  }
}

// in: x (N,C); out: y (N,C), scale (N,C)
TL_CUDA_KERNEL(lrn_forward) {
  const LrnArgs& a = c.args<LrnArgs>();
  const int64_t n = a.n;
  if (n == 0) return;
  lrnForwardKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.out[0].f32(), c.out[1].f32(),
                                                                      lrnF(a), n);
  TL_CUDA_LAUNCH_CHECK();
}

// in: x, y, dy, scale (N,C); out: dx (N,C)
TL_CUDA_KERNEL(lrn_backward) {
  const LrnArgs& a = c.args<LrnArgs>();
  const int64_t n = a.n;
  if (n == 0) return;
  lrnBackwardKernel<<<gridFor(n), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(), c.in[2].f32(),
                                                                       c.in[3].f32(), c.out[0].f32(), lrnF(a), n);
  TL_CUDA_LAUNCH_CHECK();
}

// ---- dropout -----------------------------------------------------------------------------------------------------

// mask[i] = hash(key, i) < threshold ? inv : 0; y = x·mask (the hash is cpp/dropout_hash.h, shared with the CPU)
// The step is hyper's step slot, on the device (rewritten before every step): each thread derives the key (a few fmix32).
__global__ void dropoutForwardKernel(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ mask,
                                     const float* __restrict__ hyper, unsigned long long seed,
                                     unsigned long long threshold, float inv, int64_t n) {
  const float hs = hyper[kHyperStep];
  const DropoutKey key = dropoutKey(seed, hs > 0.f ? (unsigned long long)hs : 0ull);
  TL_GRID_STRIDE(i, n) {
    const float m = (unsigned long long)dropoutHash(key, (uint32_t)i) < threshold ? inv : 0.f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

// dx = dy·mask; no __restrict__: dx may alias dy
__global__ void dropoutBackwardKernel(const float* dy, const float* __restrict__ mask, float* dx, int64_t n) {
  TL_GRID_STRIDE(i, n) dx[i] = dy[i] * mask[i];
}

// in: x (N), hyper; out: y (N), mask (N). The step is read on the device (not range-checked there).
TL_CUDA_KERNEL(dropout_forward) {
  const DropoutArgs& a = c.args<DropoutArgs>();
  const int64_t N = a.N;
  if (N == 0) return;
  const unsigned long long threshold = (unsigned long long)std::ceil(a.keepProb * 4294967296.0);
  dropoutForwardKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(
      c.in[0].f32(), c.out[0].f32(), c.out[1].f32(), c.in[1].f32(), (unsigned long long)a.seed, threshold,
      (float)(1.0 / a.keepProb), N);
  TL_CUDA_LAUNCH_CHECK();
}

// in: dy (N), mask (N); out: dx (N)
TL_CUDA_KERNEL(dropout_backward) {
  const int64_t N = c.args<SizeArgs>().N;
  if (N == 0) return;
  dropoutBackwardKernel<<<gridFor(N), kThreads, 0, cudaOf(c).stream()>>>(c.in[0].f32(), c.in[1].f32(),
                                                                           c.out[0].f32(), N);
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace cudak
}  // namespace tl
