// SGEMM: OpenBLAS dispatch (loaded at run time), plus a built-in BLIS-style packed GEMM (6x16 AVX2/FMA micro-kernel,
// chosen at run time by CPUID, scalar fallback). Compiled for the baseline x86-64 ISA: Note [OpenBLAS at run time].
#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TL_GEMM_X86 1
#endif

#include "gemm_openblas.h"

namespace tl {
namespace {

// Register tile MR x NR; cache blocks: a KC x NR panel of B (16 KB) stays in L1, an MC x KC block of A in L2.
constexpr int MR = 6, NR = 16;
constexpr int MC = 144, KC = 256, NC = 4096;

// Per-thread packing buffers, 64-byte aligned (the AVX2 kernel loads B with aligned loads).
struct PackBuf {
  float* p = nullptr;
  size_t cap = 0;
  ~PackBuf() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      cap = n;
    }
    return p;
  }
};
thread_local PackBuf tlsA, tlsB;

// Packs op(A)[i0:i0+mc, p0:p0+kc] into row panels of MR: dst[panel][k][MR], zero padded past mc.
void packA(bool tA, const float* A, int lda, int i0, int mc, int p0, int kc, float* dst) {
  for (int ip = 0; ip < mc; ip += MR) {
    int mr = std::min(MR, mc - ip);
    float* d = dst + (size_t)(ip / MR) * kc * MR;
    if (!tA) {
      for (int ii = 0; ii < mr; ++ii) {
        const float* src = A + (size_t)(i0 + ip + ii) * lda + p0;
        for (int k = 0; k < kc; ++k) d[k * MR + ii] = src[k];
      }
      for (int ii = mr; ii < MR; ++ii)
        for (int k = 0; k < kc; ++k) d[k * MR + ii] = 0.f;
    } else {
      // op(A)(i,k) = A[k*lda + i]: each k reads mr contiguous floats.
      for (int k = 0; k < kc; ++k) {
        const float* src = A + (size_t)(p0 + k) * lda + i0 + ip;
        int ii = 0;
        for (; ii < mr; ++ii) d[k * MR + ii] = src[ii];
        for (; ii < MR; ++ii) d[k * MR + ii] = 0.f;
      }
    }
  }
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] into column panels of NR: dst[panel][k][NR], zero padded past nc.
void packB(bool tB, const float* B, int ldb, int p0, int kc, int j0, int nc, float* dst) {
  for (int jp = 0; jp < nc; jp += NR) {
    int nr = std::min(NR, nc - jp);
    float* d = dst + (size_t)(jp / NR) * kc * NR;
    if (!tB) {
      for (int k = 0; k < kc; ++k) {
        const float* src = B + (size_t)(p0 + k) * ldb + j0 + jp;
        int jj = 0;
        for (; jj < nr; ++jj) d[k * NR + jj] = src[jj];
        for (; jj < NR; ++jj) d[k * NR + jj] = 0.f;
      }
    } else {
      // op(B)(k,j) = B[j*ldb + k]: read each source row contiguously, scatter into the small (L1) panel.
      for (int jj = 0; jj < nr; ++jj) {
        const float* src = B + (size_t)(j0 + jp + jj) * ldb + p0;
        for (int k = 0; k < kc; ++k) d[k * NR + jj] = src[k];
      }
      for (int jj = nr; jj < NR; ++jj)
        for (int k = 0; k < kc; ++k) d[k * NR + jj] = 0.f;
    }
  }
}

// Writes an MR x NR accumulator tile into the mr x nr corner of C. beta == 0 never reads C.
inline void storeTile(const float* acc, float* c, int ldc, int mr, int nr, float alpha, float beta) {
  for (int i = 0; i < mr; ++i) {
    float* ci = c + (size_t)i * ldc;
    const float* ai = acc + i * NR;
    if (beta == 0.f)
      for (int j = 0; j < nr; ++j) ci[j] = alpha * ai[j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = alpha * ai[j] + beta * ci[j];
  }
}

using MicroKernel = void (*)(int kc, const float* a, const float* b, float* c, int ldc, int mr, int nr, float alpha,
                             float beta);

void microScalar(int kc, const float* a, const float* b, float* c, int ldc, int mr, int nr, float alpha,
                 float beta) {
  float acc[MR * NR] = {};
  for (int k = 0; k < kc; ++k) {
    const float* ak = a + k * MR;
    const float* bk = b + k * NR;
    for (int i = 0; i < MR; ++i) {
      float ai = ak[i];
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += ai * bk[j];
    }
  }
  storeTile(acc, c, ldc, mr, nr, alpha, beta);
}

#ifdef TL_GEMM_X86
// 6x16 tile in 12 ymm accumulators; per k: 2 aligned B loads, 6 A broadcasts, 12 FMAs.
__attribute__((target("avx2,fma"))) void microAvx2(int kc, const float* a, const float* b, float* c, int ldc, int mr,
                                                   int nr, float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av;
    av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR;
    b += NR;
  }
  if (mr == MR && nr == NR) {
    const __m256 va = _mm256_set1_ps(alpha);
    __m256 r[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    if (beta == 0.f) {
      for (int i = 0; i < MR; ++i) {
        float* ci = c + (size_t)i * ldc;
        _mm256_storeu_ps(ci, _mm256_mul_ps(va, r[2 * i]));
        _mm256_storeu_ps(ci + 8, _mm256_mul_ps(va, r[2 * i + 1]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
      for (int i = 0; i < MR; ++i) {
        float* ci = c + (size_t)i * ldc;
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, r[2 * i], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
        _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, r[2 * i + 1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
      }
    }
    return;
  }
  alignas(32) float acc[MR * NR];
  _mm256_store_ps(acc + 0, c00); _mm256_store_ps(acc + 8, c01);
  _mm256_store_ps(acc + 16, c10); _mm256_store_ps(acc + 24, c11);
  _mm256_store_ps(acc + 32, c20); _mm256_store_ps(acc + 40, c21);
  _mm256_store_ps(acc + 48, c30); _mm256_store_ps(acc + 56, c31);
  _mm256_store_ps(acc + 64, c40); _mm256_store_ps(acc + 72, c41);
  _mm256_store_ps(acc + 80, c50); _mm256_store_ps(acc + 88, c51);
  storeTile(acc, c, ldc, mr, nr, alpha, beta);
}
#endif

bool cpuHasAvx2() {
#ifdef TL_GEMM_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

MicroKernel pickMicroKernel() {
#ifdef TL_GEMM_X86
  if (cpuHasAvx2()) return microAvx2;
#endif
  return microScalar;
}

MicroKernel microKernel() {
  static const MicroKernel k = pickMicroKernel();
  return k;
}

// Splits n into ceil(n/blk) near-equal blocks, each a multiple of `align` except the last (avoids a thin tail block).
int evenBlock(int n, int blk, int align) {
  int nb = (n + blk - 1) / blk;
  int b = (n + nb - 1) / nb;
  return (b + align - 1) / align * align;
}

// C = beta*C without reading C when beta == 0 (used when K == 0 or alpha == 0).
void scaleC(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    float* ci = C + (size_t)i * ldc;
    if (beta == 0.f)
      std::memset(ci, 0, sizeof(float) * N);
    else if (beta != 1.f)
      for (int j = 0; j < N; ++j) ci[j] *= beta;
  }
}

// One thread's GEMM over its whole (sub)problem; M, N, K >= 1.
void gemmSerial(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc) {
  const MicroKernel ukr = microKernel();
  const int kcBlk = evenBlock(K, KC, 1);
  const int mcBlk = evenBlock(M, MC, MR);
  const int ncBlk = std::min(NC, (N + NR - 1) / NR * NR);
  float* bbuf = tlsB.get((size_t)kcBlk * ncBlk);
  float* abuf = tlsA.get((size_t)kcBlk * mcBlk);
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += kcBlk) {
      const int kc = std::min(kcBlk, K - pc);
      const float betaEff = pc == 0 ? beta : 1.f;  // later K blocks accumulate onto the first one's result
      packB(tB, B, ldb, pc, kc, jc, nc, bbuf);
      for (int ic = 0; ic < M; ic += mcBlk) {
        const int mc = std::min(mcBlk, M - ic);
        packA(tA, A, lda, ic, mc, pc, kc, abuf);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = std::min(NR, nc - jr);
          const float* bp = bbuf + (size_t)(jr / NR) * kc * NR;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = std::min(MR, mc - ir);
            ukr(kc, abuf + (size_t)(ir / MR) * kc * MR, bp, C + (size_t)(ic + ir) * ldc + jc + jr, ldc, mr, nr,
                alpha, betaEff);
          }
        }
      }
    }
  }
}

// Note [GEMM threads]: a GEMM's threads belong to the device whose thread runs it, never to the process, so two
// runtimes (or towers) in one process cannot change each other's thread count, speed or results. And the thread count
// never changes the bits of C: a product is cut into slabs by its shape alone (slabsOf reads M, N and K, nothing
// else), every slab is computed by one single-threaded call (the built-in kernel is serial; OpenBLAS is held at one
// thread, once, for the whole process), and the threads only decide who computes which slab. With one thread the
// device thread computes every slab itself, in the same calls. So a run's trajectory does not depend on its GEMM
// threads; the run settings record them in the layout all the same (src/options.ts, Note [Run settings]).
// cpp/cpu/selftest.sh (run by test/cpu-selftest.test.ts) checks the bits at 1-7 threads, built-in and OpenBLAS, with
// two callers at once, and sgemmMany's against each product alone; the pool is in
// gemm_threads.cc; test/crash-consistency.test.ts trains two runtimes at once on other thread counts.

struct Slabs {
  bool alongN;  // columns of C (else rows)
  int width;    // columns (rows) per slab; the last one may be narrower
  int count;
};

constexpr double kSlabWork = 2.0e6;          // multiply-adds below which a product is one slab
constexpr int kMaxSlabs = 64;                // so more threads than this gain nothing on one product
// Whole register tiles (NR = 16, MR = 6) for the built-in kernel. Column slabs are at least 128 wide: each slab is
// its own call, and OpenBLAS packs the uncut operand again per call, so 64-wide slabs cost the MNIST MLP's
// 128x500x784 and 784x500x128 products ~6-8% (issue 16: per-op marks at 1 thread, ~1.26 -> ~1.17 ms and ~1.31 ->
// ~1.24 ms; callgrind, OpenBLAS alone: 28.2M -> 27.0M and 29.0M -> 27.5M instructions for two products). The price:
// such a product has 4 slabs, not 8, for the threads to share.
constexpr int kColAlign = 128, kRowAlign = 48;

int ceilDiv(int a, int b) { return (a + b - 1) / b; }
int roundUp(int a, int b) { return ceilDiv(a, b) * b; }

Slabs slabsOf(int M, int N, int K) {
  const double want = std::min<double>(kMaxSlabs, std::floor((double)M * N * K / kSlabWork));
  if (want >= 2) {
    const int w = static_cast<int>(want);
    if (N >= 2 * kColAlign) {
      const int width = roundUp(ceilDiv(N, w), kColAlign);
      return {true, width, ceilDiv(N, width)};
    }
    if (M >= 2 * kRowAlign) {
      const int height = roundUp(ceilDiv(M, w), kRowAlign);
      return {false, height, ceilDiv(M, height)};
    }
  }
  return {true, N, 1};
}

using SerialGemm = void (*)(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda,
                            const float* B, int ldb, float beta, float* C, int ldc);

// OpenBLAS at one thread for the whole process (Note [GEMM threads]); set once, before its first product.
std::once_flag g_blasOneThread;

// Note [OpenBLAS's first product]: on a 2-core AMD EPYC VM without AVX-512 (OpenBLAS 0.3.21, core Zen), OpenBLAS's
// narrow NN products, such as our 128-column slabs (slabsOf), ran at half speed for the life of a process whose
// first products were all narrow: 128x128x784 took 1.61-1.72 ms after a first product of 128x128x784, 128x256x784,
// 128x300x784, 8x2048x2048 or 2x2x2, against 0.70-0.77 ms after a first product of 128x400x784, 128x500x784,
// 256x512x512 or 512^3 (C calling OpenBLAS directly, one process per case, the same each of 2-6 times;
// tools/openblas-first-product.c reproduces it).
// TN products (the dW slabs) and whole products were not affected. Page faults were the same, and so was THP off;
// a first product by another thread on the same buffer (calls one after the other) fixed it too. We do not know
// OpenBLAS's mechanism. So every thread's first OpenBLAS product is a 256x512x512 NN on scratch of its own (67M
// multiply-adds, about 2 ms there, once per thread), before any product of ours. It writes only the scratch: the
// bits of every later product are unchanged. Measured on that VM: the MNIST step's GEMM floor (bench/mnist-floor.ts)
// at 1 thread went from 9.9-10.3 to 6.4-6.9 ms.
void warmOpenBlas(const OpenBlas& b) {
  thread_local bool warmed = false;
  if (warmed) return;
  warmed = true;
  constexpr int M = 256, N = 512, K = 512;
  std::vector<float> a((size_t)M * K, 0.5f), w((size_t)K * N, 0.25f), c((size_t)M * N);
  b.sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, M, N, K, 1.f, a.data(), K, w.data(), N, 0.f, c.data(), N);
}

void openblasSerial(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) {
  const OpenBlas& b = openBlas();
  std::call_once(g_blasOneThread, [&b] { b.setThreads(1); });
  warmOpenBlas(b);  // Note [OpenBLAS's first product]
  b.sgemm(kCblasRowMajor, tA ? kCblasTrans : kCblasNoTrans, tB ? kCblasTrans : kCblasNoTrans, M, N, K, alpha, A, lda, B,
          ldb, beta, C, ldc);
}

// Slab i of product g, cut as s says, computed by one `serial` call.
void runSlab(SerialGemm serial, const GemmCall& g, const Slabs& s, int i) {
  const int at = i * s.width;
  if (s.alongN) {
    const int n = std::min(s.width, g.N - at);
    serial(g.tA, g.tB, g.M, n, g.K, g.alpha, g.A, g.lda, g.tB ? g.B + (size_t)at * g.ldb : g.B + at, g.ldb, g.beta,
           g.C + at, g.ldc);
  } else {
    const int m = std::min(s.width, g.M - at);
    serial(g.tA, g.tB, m, g.N, g.K, g.alpha, g.tA ? g.A + at : g.A + (size_t)at * g.lda, g.lda, g.B, g.ldb, g.beta,
           g.C + (size_t)at * g.ldc, g.ldc);
  }
}

// The slabs of the products `calls` (each cut by its own shape, slabsOf), all handed to the calling thread's
// GemmThreads as one job and computed with `serial`. A degenerate product (K = 0 or alpha = 0: C = beta·C) is done
// here first; an empty one is skipped.
void runSlabs(SerialGemm serial, const GemmCall* calls, int n) {
  struct Piece {
    int call, slab;
  };
  std::vector<Slabs> cuts((size_t)n);
  std::vector<Piece> pieces;
  for (int c = 0; c < n; ++c) {
    const GemmCall& g = calls[c];
    if (g.M <= 0 || g.N <= 0) continue;
    if (g.K <= 0 || g.alpha == 0.f) {  // cblas would reject lda < 1; the result is just beta*C either way
      scaleC(g.M, g.N, g.beta, g.C, g.ldc);
      continue;
    }
    cuts[(size_t)c] = slabsOf(g.M, g.N, g.K);
    for (int i = 0; i < cuts[(size_t)c].count; ++i) pieces.push_back({c, i});
  }
  auto piece = [&](int k) {
    const Piece p = pieces[(size_t)k];
    runSlab(serial, calls[p.call], cuts[(size_t)p.call], p.slab);
  };
  GemmThreads* t = GemmThreads::bound();
  if (t && pieces.size() > 1)
    t->forEach((int)pieces.size(), piece);
  else
    for (int k = 0; k < (int)pieces.size(); ++k) piece(k);
}

SerialGemm processSerial() { return openBlas().sgemm ? openblasSerial : gemmSerial; }

}  // namespace

void sgemmBuiltin(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                  float beta, float* C, int ldc) {
  const GemmCall g{tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  runSlabs(gemmSerial, &g, 1);
}

void sgemm(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  const GemmCall g{tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  runSlabs(processSerial(), &g, 1);
}

void sgemmMany(const GemmCall* calls, int n) { runSlabs(processSerial(), calls, n); }

void sgemmAlone(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    scaleC(M, N, beta, C, ldc);
    return;
  }
  processSerial()(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemmForEach(int count, const std::function<void(int)>& f) {
  GemmThreads* t = GemmThreads::bound();
  if (t && count > 1)
    t->forEach(count, f);
  else
    for (int i = 0; i < count; ++i) f(i);
}

const char* gemmImplName() {
  static const std::string name = [] {
    const OpenBlas& b = openBlas();
    const char* builtin = microKernel() == microScalar ? "builtin-scalar" : "builtin-avx2";
    return std::string(b.sgemm ? "openblas" : builtin) + " (" + b.detail + ")";
  }();
  return name.c_str();
}

const char* gemmKernelName() {
  static const std::string name = [] {
    const OpenBlas& b = openBlas();
    if (b.sgemm) return "openblas " + b.kernel;
    return std::string(microKernel() == microScalar ? "builtin-scalar" : "builtin-avx2");
  }();
  return name.c_str();
}

}  // namespace tl
