// Self-test of sgemm and the built-in kernel against a float64 GEMM, one and two threads, concurrent callers, the
// same bits at every thread count (Note [GEMM threads]); and a small benchmark.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

#include "selftest.h"

namespace selftest {

namespace {


using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);

void naiveGemm(bool tA, bool tB, int M, int N, int K, double alpha, const float* A, int lda, const float* B, int ldb,
               double beta, const std::vector<float>& C0, std::vector<double>& C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) {
        double a = tA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        double b = tB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        s += a * b;
      }
      C[(size_t)i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * C0[(size_t)i * ldc + j]);
    }
}

// Returns the worst relative error over the M x N block (padding columns must be left untouched).
bool gemmCase(GemmFn f, bool tA, bool tB, int M, int N, int K, float alpha, float beta, int pad, double* errOut) {
  const int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
  const int rowsA = tA ? K : M, rowsB = tB ? N : K;
  auto A = rnd((size_t)rowsA * lda), B = rnd((size_t)rowsB * ldb);
  std::vector<float> C = beta == 0 ? std::vector<float>((size_t)M * ldc, std::nanf("")) : rnd((size_t)M * ldc);
  const std::vector<float> C0 = C;
  std::vector<double> R(C.size());
  for (size_t i = 0; i < R.size(); ++i) R[i] = C0[i];
  naiveGemm(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C0, R, ldc);
  f(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  double num = 0, den = 0;
  bool padOk = true;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      size_t p = (size_t)i * ldc + j;
      if (j >= N) {
        padOk &= std::memcmp(&C[p], &C0[p], sizeof(float)) == 0;
        continue;
      }
      if (std::isnan(C[p])) { num = INFINITY; continue; }
      num += (C[p] - R[p]) * (C[p] - R[p]);
      den += R[p] * R[p];
    }
  *errOut = den == 0 ? std::sqrt(num) : std::sqrt(num / den);
  return padOk && *errOut < 1e-5;
}

void testGemm(GemmFn f, const char* name) {
  const int shapes[][3] = {{1, 1, 1},   {1, 17, 3},   {5, 1, 9},    {3, 4, 1},     {6, 16, 8},   {7, 17, 5},
                           {13, 31, 29}, {33, 65, 40}, {64, 64, 64}, {100, 7, 300}, {3, 200, 513}, {145, 97, 257},
                           {128, 500, 784}, {200, 33, 1}, {0, 5, 3},    {4, 0, 3},     {4, 5, 0}};
  int n = 0, bad = 0;
  double worst = 0;
  std::string firstBad;
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.f, 1.f, 0.5f})
        for (int pad : {0, 3}) {
          const bool tA = t & 1, tB = t & 2;
          const float alpha = (n % 3 == 2) ? -1.5f : 1.f;
          double e = 0;
          bool ok = gemmCase(f, tA, tB, s[0], s[1], s[2], alpha, beta, pad, &e);
          ++n;
          if (!std::isnan(e)) worst = std::max(worst, e);
          if (!ok) {
            ++bad;
            if (firstBad.empty()) {
              char buf[200];
              std::snprintf(buf, sizeof buf, " first bad: M=%d N=%d K=%d tA=%d tB=%d beta=%g pad=%d err=%g", s[0], s[1],
                            s[2], tA, tB, beta, pad, e);
              firstBad = buf;
            }
          }
        }
  report(bad == 0, std::string(name) + ": " + std::to_string(n) + " cases (shapes x transposes x beta 0/1/.5 x ld pad)" +
                       firstBad, worst);
}

// Two device threads calling GEMM at once, each with its own 2 GEMM threads.
void testGemmConcurrent(GemmFn f, const char* name) {
  bool ok[2] = {true, true};
  auto work = [&](int id) {
    tl::GemmThreads mine(2);
    tl::GemmThreads::bind(&mine);
    std::mt19937 rng(99 + id);
    for (int rep = 0; rep < 20 && ok[id]; ++rep) {
      const int M = 50 + rep * 7, N = 60 + id * 13, K = 300;
      std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N, std::nanf(""));
      std::uniform_real_distribution<float> u(-1, 1);
      for (auto& v : A) v = u(rng);
      for (auto& v : B) v = u(rng);
      std::vector<double> R(C.size());
      naiveGemm(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, C, R, N);
      f(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
      ok[id] = relErr(C.data(), R) < 1e-5;
    }
  };
  std::thread t0(work, 0), t1(work, 1);
  t0.join();
  t1.join();
  report(ok[0] && ok[1], std::string(name) + ": two caller threads at once, 2 GEMM threads each");
}

// The bits of C do not depend on the thread count (Note [GEMM threads]): 1, 2, 3, 4 and 7 threads, big and odd shapes.
void testGemmSameBits(GemmFn f, const char* name) {
  const int shapes[][3] = {{128, 500, 784}, {784, 500, 43}, {43, 784, 500}, {1000, 10, 300}, {333, 257, 129}};
  int n = 0, bad = 0;
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.f, 1.f}) {
        const bool tA = t & 1, tB = t & 2;
        const int M = s[0], N = s[1], K = s[2], lda = tA ? M : K, ldb = tB ? K : N;
        auto A = rnd((size_t)M * K), B = rnd((size_t)K * N), C0 = rnd((size_t)M * N);
        std::vector<float> ref;
        for (int threads : {1, 2, 3, 4, 7}) {
          tl::GemmThreads pool(threads);
          tl::GemmThreads::bind(&pool);
          std::vector<float> C = C0;
          f(tA, tB, M, N, K, 1.f, A.data(), lda, B.data(), ldb, beta, C.data(), N);
          tl::GemmThreads::bind(nullptr);
          if (ref.empty()) ref = C;
          else bad += std::memcmp(ref.data(), C.data(), C.size() * sizeof(float)) != 0;
          ++n;
        }
      }
  report(bad == 0, std::string(name) + ": the same bits at 1, 2, 3, 4 and 7 threads (" + std::to_string(n) + " products, " +
                       std::to_string(bad) + " differ)");
}

// sgemmMany: the products of one call, degenerate ones included (K = 0: C = beta·C; M = 0: nothing), give the bits of
// sgemm() on each alone, at 1, 2, 3 and 4 threads.
void testGemmMany() {
  const int shapes[][3] = {{500, 10, 128}, {128, 500, 10}, {784, 500, 128}, {7, 5, 0}, {0, 9, 4}, {33, 1, 17}};
  const int count = sizeof(shapes) / sizeof(shapes[0]);
  std::vector<std::vector<float>> A, B, C0, alone;
  std::vector<tl::GemmCall> calls;
  for (int i = 0; i < count; ++i) {
    const int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
    const bool tA = i & 1, tB = (i >> 1) & 1;
    A.push_back(rnd((size_t)std::max(M * K, 1)));
    B.push_back(rnd((size_t)std::max(K * N, 1)));
    C0.push_back(rnd((size_t)std::max(M * N, 1)));
    const float beta = i % 3 == 0 ? 0.f : 0.5f;
    calls.push_back({tA, tB, M, N, K, 1.f, A.back().data(), std::max(tA ? M : K, 1), B.back().data(), std::max(tB ? K : N, 1), beta,
                     nullptr, std::max(N, 1)});
  }
  for (int i = 0; i < count; ++i) {
    alone.push_back(C0[i]);
    const tl::GemmCall& g = calls[i];
    sgemm(g.tA, g.tB, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.B, g.ldb, g.beta, alone.back().data(), g.ldc);
  }
  int bad = 0;
  for (int threads : {1, 2, 3, 4}) {
    tl::GemmThreads pool(threads);
    tl::GemmThreads::bind(&pool);
    auto C = C0;
    for (int i = 0; i < count; ++i) calls[i].C = C[i].data();
    tl::sgemmMany(calls.data(), count);
    tl::GemmThreads::bind(nullptr);
    for (int i = 0; i < count; ++i) bad += std::memcmp(C[i].data(), alone[i].data(), C[i].size() * sizeof(float)) != 0;
  }
  report(bad == 0, "sgemmMany: " + std::to_string(count) + " products in one call, the bits of each sgemm alone at 1-4 threads (" +
                       std::to_string(bad) + " differ)");
}

double timeGemm(GemmFn f, bool tA, bool tB, int M, int N, int K, const std::vector<float>& A,
                const std::vector<float>& B, std::vector<float>& C) {
  const int lda = tA ? M : K, ldb = tB ? K : N;
  f(tA, tB, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), N);  // warm-up (packing buffers, threads)
  double best = 1e30;
  for (int rep = 0; rep < 7; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    f(tA, tB, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), N);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void benchGemm() {
  // The three GEMMs of a dense layer with B=128, I=784, O=500.
  struct Form { const char* what; bool tA, tB; int M, N, K; } forms[] = {
      {"fwd  y=x·W     (128x500, K=784)", false, false, 128, 500, 784},
      {"bwd dW=xT·dy   (784x500, K=128)", true, false, 784, 500, 128},
      {"bwd dx=dy·WT   (128x784, K=500)", false, true, 128, 784, 500},
      {"512x500, K=784 (reference size)", false, false, 512, 500, 784},
  };
  std::printf("GEMM timings (best of 7), sgemm = %s, threads = %d:\n", gemmImplName(),
              tl::GemmThreads::bound() ? tl::GemmThreads::bound()->size() : 1);
  for (auto& fm : forms) {
    auto A = rnd((size_t)fm.M * fm.K), B = rnd((size_t)fm.K * fm.N);
    std::vector<float> C((size_t)fm.M * fm.N);
    double tb = timeGemm(sgemmBuiltin, fm.tA, fm.tB, fm.M, fm.N, fm.K, A, B, C);
    double ts = timeGemm(sgemm, fm.tA, fm.tB, fm.M, fm.N, fm.K, A, B, C);
    double fl = 2.0 * fm.M * fm.N * fm.K;
    std::printf("  %s  builtin %7.3f ms (%5.1f GFLOP/s)  sgemm %7.3f ms (%5.1f GFLOP/s)  builtin/sgemm speed %.0f%%\n",
                fm.what, tb * 1e3, fl / tb * 1e-9, ts * 1e3, fl / ts * 1e-9, 100.0 * ts / tb);
  }
}

}  // namespace

void testGemmAll() {
  testGemm(sgemm, "sgemm");
  testGemm(sgemmBuiltin, "sgemmBuiltin 1 thread");
  {
    tl::GemmThreads two(2);
    tl::GemmThreads::bind(&two);
    testGemm(sgemmBuiltin, "sgemmBuiltin 2 threads");
    testGemm(sgemm, "sgemm 2 threads");
    tl::GemmThreads::bind(nullptr);
  }
  testGemmConcurrent(sgemmBuiltin, "sgemmBuiltin");
  testGemmConcurrent(sgemm, "sgemm");
  testGemmSameBits(sgemmBuiltin, "sgemmBuiltin");
  testGemmSameBits(sgemm, "sgemm");
  testGemmMany();
}

void benchGemmAll() {
  benchGemm();
  tl::GemmThreads two(2);
  tl::GemmThreads::bind(&two);
  benchGemm();
  tl::GemmThreads::bind(nullptr);
}

}  // namespace selftest
