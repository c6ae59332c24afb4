// CPU pooling and dropout kernels, NHWC (see docs/kernels.md, "Convolution and pooling"); conv2d is in
// kernels_conv2d.cc, LRN in kernels_lrn.cc.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "isa.h"
#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// ---- max pooling -------------------------------------------------------------------------------------------------

namespace {

// The window loops of maxpool_forward on the ISA path (Note [Kernel ISA] in isa.h): selects only, the same bits on each.
struct MaxpoolForward {
  TL_ISA_INLINE static void run(const ConvGeom* gp, int64_t b0, int64_t b1, const float* px, float* py, int32_t* pa) {
    const ConvGeom& g = *gp;
    const int64_t C = g.C;
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t ih0 = oh * g.SH - g.padTop;
        const int64_t h0 = std::max<int64_t>(ih0, 0), h1 = std::min<int64_t>(ih0 + g.KH, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t iw0 = ow * g.SW - g.padLeft;
          const int64_t w0 = std::max<int64_t>(iw0, 0), w1 = std::min<int64_t>(iw0 + g.KW, g.W);
          const int64_t o = ((b * g.OH + oh) * g.OW + ow) * C;
          float* __restrict__ yo = py + o;
          int32_t* __restrict__ ao = pa + o;
          bool first = true;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const int64_t base = ((b * g.H + ih) * g.W + iw) * C;
              const float* __restrict__ xi = px + base;
              if (first) {
                for (int64_t ch = 0; ch < C; ++ch) { yo[ch] = xi[ch]; ao[ch] = (int32_t)(base + ch); }
                first = false;
              } else {
                const int32_t b32 = (int32_t)base, C32 = (int32_t)C;
                for (int32_t ch = 0; ch < C32; ++ch) {  // branch-free selects, so the channel loop vectorises
                  const float v = xi[ch], cur = yo[ch];
                  const int32_t a = ao[ch];
                  const int32_t m = -(int32_t)(v > cur);  // all ones where v wins
                  yo[ch] = v > cur ? v : cur;
                  ao[ch] = (a & ~m) | ((b32 + ch) & m);
                }
              }
            }
          if (first)  // unreachable under the padding rules (every window holds an input cell); kept total
            for (int64_t ch = 0; ch < C; ++ch) { yo[ch] = 0.f; ao[ch] = -1; }
        }
      }
  }
};

}  // namespace

// in: x (B,H,W,C); out: y (B,OH,OW,C), argmax (B,OH,OW,C) i32. The first maximum in window order (kh, kw), i.e. the
// lowest flat index, wins ties; padding cells never take part.
TL_CPU_KERNEL(maxpool_forward) {
  const PoolArgs& a = c.args<PoolArgs>();
  const float* px = c.in[0].f32();
  float* py = c.out[0].f32();
  int32_t* pa = c.out[1].i32();
  // images are independent: any cut gives the same bits
  forEachRowBlock(a.g.B, a.g.H * a.g.W * a.g.C, [&](int64_t b0, int64_t b1) { perIsa<MaxpoolForward>(&a.g, b0, b1, px, py, pa); });
}

// in: dy (B,OH,OW,C), argmax (B,OH,OW,C) i32; out: dx (B,H,W,C) = 0, then dx[argmax[o]] += dy[o].
// Every argmax must lie inside its own window (as maxpool_forward writes it); otherwise an error, nothing written.
TL_CPU_KERNEL(maxpool_backward) {
  const PoolArgs& a = c.args<PoolArgs>();
  const ConvGeom& g = a.g;
  const int64_t nOut = a.nOut;
  const TensorRef &dy = c.in[0], &am = c.in[1], &dx = c.out[0];
  const int32_t* pa = am.i32();
  const int64_t C = g.C;
  // Every argmax must be a cell of its own window: a = imageBase + (ah·W + aw)·C + ch with ah, aw inside the window.
  // 32-bit unsigned arithmetic: all indices are below 2^31 (maxpoolBackwardArgs).
  const uint32_t uC = (uint32_t)std::max<int64_t>(C, 1), uW = (uint32_t)std::max<int64_t>(g.W, 1);
  const uint32_t imageSize = (uint32_t)(g.H * g.W * C);
  const int64_t outPerImage = g.OH * g.OW * C;
  // Whether image b's argmax cells are all inside their windows; raise: fail naming the first one that is not.
  auto imageOk = [&](int64_t b, bool raise) {
    bool all = true;
    for (int64_t oh = 0, o = b * outPerImage; oh < g.OH; ++oh) {
      const int64_t ih0 = oh * g.SH - g.padTop;
      const int64_t h0 = std::max<int64_t>(ih0, 0), h1 = std::min<int64_t>(ih0 + g.KH, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t iw0 = ow * g.SW - g.padLeft;
        const int64_t w0 = std::max<int64_t>(iw0, 0), w1 = std::min<int64_t>(iw0 + g.KW, g.W);
        const int64_t imageBase = b * g.H * g.W * C;
        bool ok = true;
        for (int64_t ch = 0; ch < C; ++ch) {
          const uint32_t rel = (uint32_t)((int64_t)pa[o + ch] - imageBase - ch);  // wraps when out of the image
          const uint32_t pix = rel / uC, ah = pix / uW, aw = pix - ah * uW;
          ok &= rel < imageSize && pix * uC == rel && ah >= h0 && ah < h1 && aw >= w0 && aw < w1;
        }
        if (!ok && raise)
          for (int64_t ch = 0; ch < C; ++ch) {
            const uint32_t rel = (uint32_t)((int64_t)pa[o + ch] - imageBase - ch);
            const uint32_t pix = rel / uC, ah = pix / uW, aw = pix - ah * uW;
            TL_KCHECK(c, rel < imageSize && pix * uC == rel && ah >= h0 && ah < h1 && aw >= w0 && aw < w1,
                      "argmax at o=" << o + ch << " is " << pa[o + ch] << ", not a cell of that output's window; "
                                     << "pass maxpool_forward's argmax with the same attributes");
          }
        all &= ok;
        o += C;
      }
    }
    return all;
  };
  // Images on the device's threads (each writes only its own image's dx cells, once every argmax is checked); the
  // first bad image, in order, is reported from this thread, before anything is written.
  std::vector<char> bad((size_t)g.B, 0);
  const int64_t imageCells = g.H * g.W * C;
  forEachRowBlock(g.B, imageCells, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) bad[(size_t)b] = !imageOk(b, false);
  });
  for (int64_t b = 0; b < g.B; ++b)
    if (bad[(size_t)b]) imageOk(b, true);
  float* pdx = dx.f32();
  const float* pdy = dy.f32();
  forEachRowBlock(g.B, imageCells, [&](int64_t b0, int64_t b1) {
    std::fill(pdx + b0 * imageCells, pdx + b1 * imageCells, 0.f);
    for (int64_t o = b0 * outPerImage; o < std::min(nOut, b1 * outPerImage); ++o) pdx[pa[o]] += pdy[o];
  });
}

// ---- dropout -----------------------------------------------------------------------------------------------------

// in: x (N), hyper; out: y (N), mask (N) = 1/keepProb where dropoutHash(seed, step, i) < ceil(keepProb·2^32), else 0.
// step = hyper's step slot (the optimizer step t, rewritten before every step), so one compiled program draws a new
// mask each step.
TL_CPU_KERNEL(dropout_forward) {
  const DropoutArgs& a = c.args<DropoutArgs>();
  const int64_t N = a.N;
  const uint64_t step = dropoutStep(c, c.in[1].f32());
  const uint64_t threshold = (uint64_t)std::ceil(a.keepProb * 4294967296.0);
  const float inv = (float)(1.0 / a.keepProb);
  const DropoutKey key = dropoutKey(a.seed, step);
  const float* x = c.in[0].f32();
  float *y = c.out[0].f32(), *mask = c.out[1].f32();
  for (int64_t i = 0; i < N; ++i) {
    const float m = (uint64_t)dropoutHash(key, (uint32_t)i) < threshold ? inv : 0.f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

// in: dy (N), mask (N); out: dx (N) = dy·mask (dx may alias dy)
TL_CPU_KERNEL(dropout_backward) {
  const int64_t N = c.args<SizeArgs>().N;
  const float *dy = c.in[0].f32(), *mask = c.in[1].f32();
  float* dx = c.out[0].f32();
  for (int64_t i = 0; i < N; ++i) dx[i] = dy[i] * mask[i];
}

}  // namespace cpuk
}  // namespace tl
