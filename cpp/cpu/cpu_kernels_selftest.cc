// Standalone self-test of the CPU kernels and sgemm against float64 references; built by selftest.sh.
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../backend.h"
#include "gemm.h"

using namespace tl;

namespace {

class TestBackend : public Backend {
 public:
  std::string name() const override { return "cpu:test"; }
  std::string kind() const override { return "cpu"; }
  void* alloc(size_t bytes) override { return std::calloc(bytes ? bytes : 1, 1); }
  void free(void* p) override { std::free(p); }
  void copyIn(void* d, const void* s, size_t n) override { std::memcpy(d, s, n); }
  void copyOut(void* d, const void* s, size_t n) override { std::memcpy(d, s, n); }
  void copyWithin(void* d, const void* s, size_t n) override { std::memmove(d, s, n); }
  void sync() override {}
  const KernelTable& kernels() const override { return cpuKernels(); }
};

TestBackend g_dev;
int g_fail = 0, g_pass = 0;
std::mt19937 g_rng(1234);

void report(bool ok, const std::string& what, double err = -1) {
  (ok ? g_pass : g_fail)++;
  if (err >= 0)
    std::printf("%s %-58s relerr=%.3g\n", ok ? "PASS" : "FAIL", what.c_str(), err);
  else
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
}

// Random non-zero values with magnitude in [lo, hi] and random sign.
std::vector<float> rnd(size_t n, float lo = 0.1f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::bernoulli_distribution s(0.5);
  std::vector<float> v(n);
  for (auto& x : v) x = s(g_rng) ? u(g_rng) : -u(g_rng);
  return v;
}
std::vector<int32_t> rndInt(size_t n, int lim) {
  std::uniform_int_distribution<int> u(0, lim - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = u(g_rng);
  return v;
}

double relErr(const float* a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double d = (double)a[i] - ref[i];
    if (std::isnan(a[i])) return std::numeric_limits<double>::infinity();
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
double relErr(const std::vector<float>& a, const std::vector<double>& ref) { return relErr(a.data(), ref); }

void checkClose(const std::string& what, const std::vector<float>& a, const std::vector<double>& ref,
                double tol = 1e-5) {
  double e = relErr(a, ref);
  report(e < tol, what, e);
}

TensorRef ref(std::vector<float>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::F32; return t; }
TensorRef ref(std::vector<int32_t>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::I32; return t; }
TensorRef ref(std::vector<uint8_t>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::U8; return t; }

void call(const std::string& op, std::vector<TensorRef> in, std::vector<TensorRef> out, const Attrs& a) {
  KernelFn f = cpuKernels().find(op);
  if (!f) throw std::runtime_error("kernel not registered: " + op);
  KernelCall c{g_dev, op, std::move(in), std::move(out), a};
  f(c);
}

Attrs at(std::initializer_list<std::pair<const std::string, double>> kv) { Attrs a; a.values = kv; return a; }


// ---------------------------------------------------------------- GEMM

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

// Two device threads calling GEMM at once while the pool has 2 threads: one gets the pool, the other runs serially.
void testGemmConcurrent(GemmFn f, const char* name) {
  bool ok[2] = {true, true};
  auto work = [&](int id) {
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
  report(ok[0] && ok[1], std::string(name) + ": two caller threads at once, 2-thread pool");
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
  std::printf("GEMM timings (best of 7), sgemm = %s, threads = %d:\n", gemmImplName(), gemmThreads());
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

// ---------------------------------------------------------------- kernels

void testDense() {
  for (auto s : {std::array<int, 3>{7, 13, 5}, std::array<int, 3>{64, 300, 70}, std::array<int, 3>{1, 1, 1}}) {
    const int B = s[0], I = s[1], O = s[2];
    const std::string tag = " B=" + std::to_string(B) + " I=" + std::to_string(I) + " O=" + std::to_string(O);
    auto x = rnd((size_t)B * I), W = rnd((size_t)I * O), b = rnd(O), dy = rnd((size_t)B * O);
    std::vector<float> y((size_t)B * O, std::nanf(""));
    call("dense_forward", {ref(x), ref(W), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
    std::vector<double> ry((size_t)B * O);
    for (int r = 0; r < B; ++r)
      for (int o = 0; o < O; ++o) {
        double a = b[o];
        for (int i = 0; i < I; ++i) a += (double)x[r * I + i] * W[i * O + o];
        ry[r * O + o] = a;
      }
    checkClose("dense_forward" + tag, y, ry);

    std::vector<double> rdW((size_t)I * O, 0), rdb(O, 0), rdx((size_t)B * I, 0);
    for (int r = 0; r < B; ++r)
      for (int o = 0; o < O; ++o) {
        rdb[o] += dy[r * O + o];
        for (int i = 0; i < I; ++i) {
          rdW[i * O + o] += (double)x[r * I + i] * dy[r * O + o];
          rdx[r * I + i] += (double)dy[r * O + o] * W[i * O + o];
        }
      }
    std::vector<float> dW((size_t)I * O, std::nanf("")), db(O, std::nanf("")), dx((size_t)B * I, std::nanf(""));
    call("dense_backward", {ref(x), ref(W), ref(dy)}, {ref(dW), ref(db), ref(dx)}, at({{"B", B}, {"I", I}, {"O", O}}));
    checkClose("dense_backward dW" + tag, dW, rdW);
    checkClose("dense_backward db" + tag, db, rdb);
    checkClose("dense_backward dx" + tag, dx, rdx);
    // accumulate=1 adds onto dW/db; without a 3rd output dx is untouched
    auto dW0 = rnd(dW.size()), db0 = rnd(db.size());
    dW = dW0; db = db0;
    call("dense_backward", {ref(x), ref(W), ref(dy)}, {ref(dW), ref(db)},
         at({{"B", B}, {"I", I}, {"O", O}, {"accumulate", 1}}));
    for (size_t i = 0; i < rdW.size(); ++i) rdW[i] += dW0[i];
    for (size_t i = 0; i < rdb.size(); ++i) rdb[i] += db0[i];
    checkClose("dense_backward accumulate dW" + tag, dW, rdW);
    checkClose("dense_backward accumulate db" + tag, db, rdb);
  }
  // batch-long db reduction at the largest test size
  {
    const int B = 256, I = 1000, O = 10;
    auto x = rnd((size_t)B * I), W = rnd((size_t)I * O), dy = rnd((size_t)B * O);
    std::vector<float> dW((size_t)I * O), db(O), dx((size_t)B * I);
    call("dense_backward", {ref(x), ref(W), ref(dy)}, {ref(dW), ref(db), ref(dx)}, at({{"B", B}, {"I", I}, {"O", O}}));
    std::vector<double> rdb(O, 0), rdx((size_t)B * I, 0);
    for (int r = 0; r < B; ++r)
      for (int o = 0; o < O; ++o) {
        rdb[o] += dy[r * O + o];
        for (int i = 0; i < I; ++i) rdx[r * I + i] += (double)dy[r * O + o] * W[i * O + o];
      }
    checkClose("dense_backward db B=256 I=1000 O=10", db, rdb);
    checkClose("dense_backward dx B=256 I=1000 O=10", dx, rdx);
  }
}

void testUnary(const char* fwd, const char* bwd, std::function<double(double)> f, std::function<double(double, double)> g,
               float mag) {
  const int N = 1003;
  auto x = rnd(N, 0.05f, mag), dy = rnd(N);
  std::vector<float> y(N, std::nanf(""));
  call(fwd, {ref(x)}, {ref(y)}, at({{"N", N}}));
  std::vector<double> ry(N), rdx(N);
  for (int i = 0; i < N; ++i) ry[i] = f(x[i]);
  checkClose(std::string(fwd) + " N=1003 |x|<=" + std::to_string((int)mag), y, ry);
  std::vector<float> dx(N, std::nanf(""));
  for (int i = 0; i < N; ++i) rdx[i] = g(y[i], dy[i]);
  call(bwd, {ref(y), ref(dy)}, {ref(dx)}, at({{"N", N}}));
  checkClose(std::string(bwd) + " N=1003", dx, rdx);
  // dx may alias dy
  std::vector<float> d2 = dy;
  call(bwd, {ref(y), ref(d2)}, {ref(d2)}, at({{"N", N}}));
  report(std::memcmp(d2.data(), dx.data(), N * sizeof(float)) == 0, std::string(bwd) + " with dx aliasing dy");
}

void testSoftmaxMeanAcc() {
  const int B = 37, C = 10;
  auto logits = rnd((size_t)B * C, 0.1f, 30.f);  // large logits exercise the max subtraction
  auto labels = rndInt(B, C);
  std::vector<float> hyper = {0.1f, 3.f, 1.f / 128.f};
  std::vector<float> loss(1, std::nanf("")), probs((size_t)B * C, std::nanf(""));
  call("softmax_xent_forward", {ref(logits), ref(labels), ref(hyper)}, {ref(loss), ref(probs)}, at({{"B", B}, {"C", C}}));
  std::vector<double> rp((size_t)B * C), rl(1, 0);
  for (int r = 0; r < B; ++r) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < C; ++j) mx = std::max(mx, (double)logits[r * C + j]);
    for (int j = 0; j < C; ++j) s += std::exp((double)logits[r * C + j] - mx);
    for (int j = 0; j < C; ++j) rp[r * C + j] = std::exp((double)logits[r * C + j] - mx) / s;
    rl[0] += (mx + std::log(s)) - logits[r * C + labels[r]];
  }
  rl[0] *= hyper[2];
  checkClose("softmax_xent_forward probs B=37 C=10", probs, rp);
  checkClose("softmax_xent_forward loss", loss, rl);
  std::vector<float> dl((size_t)B * C, std::nanf(""));
  call("softmax_xent_backward", {ref(probs), ref(labels), ref(hyper)}, {ref(dl)}, at({{"B", B}, {"C", C}}));
  std::vector<double> rdl((size_t)B * C);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < C; ++j) rdl[r * C + j] = (double)hyper[2] * (probs[r * C + j] - (j == labels[r] ? 1.0 : 0.0));
  checkClose("softmax_xent_backward", dl, rdl);

  auto x = rnd((size_t)B * C);
  std::vector<float> ml(1, std::nanf(""));
  call("mean_forward", {ref(x), ref(hyper)}, {ref(ml)}, at({{"B", B}, {"C", C}}));
  double s = 0;
  for (float v : x) s += v;
  checkClose("mean_forward", ml, {hyper[2] * s / C});
  std::vector<float> mdx((size_t)B * C, std::nanf(""));
  call("mean_backward", {ref(hyper)}, {ref(mdx)}, at({{"B", B}, {"C", C}}));
  checkClose("mean_backward", mdx, std::vector<double>((size_t)B * C, (double)hyper[2] / C));

  // accuracy: rows with a tie put the label on the second maximum, which must not count
  auto lg = rnd((size_t)B * C);
  auto lab = rndInt(B, C);
  int want = 0;
  for (int r = 0; r < B; ++r) {
    int best = 0;
    if (r % 5 == 0) { lg[r * C + 2] = 5.f; lg[r * C + 7] = 5.f; lab[r] = (r % 10 == 0) ? 7 : 2; }
    if (r % 3 == 0 && r % 5 != 0) { lab[r] = 0; for (int j = 1; j < C; ++j) if (lg[r * C + j] > lg[r * C]) lab[r] = j; }
    for (int j = 1; j < C; ++j) if (lg[r * C + j] > lg[r * C + best]) best = j;
    want += best == lab[r];
  }
  std::vector<float> cnt(1, std::nanf(""));
  call("accuracy_count", {ref(lg), ref(lab)}, {ref(cnt)}, at({{"B", B}, {"C", C}}));
  report(cnt[0] == (float)want && want > 0, "accuracy_count = " + std::to_string((int)cnt[0]) + " (want " + std::to_string(want) + ")");
}

void testElementwise() {
  const int N = 100003;
  auto w = rnd(N), g = rnd(N);
  {
    std::vector<float> loss = {0.75f};
    call("l2_loss", {ref(w)}, {ref(loss)}, at({{"N", N}, {"lambda", 0.003}}));
    double s = 0;
    for (float v : w) s += (double)v * v;
    checkClose("l2_loss (accumulates) N=100003", loss, {0.75 + 0.003 * 0.5 * s});
    std::vector<float> ss = {2.f};
    call("sum_squares", {ref(w)}, {ref(ss)}, at({{"N", N}}));
    checkClose("sum_squares (accumulates) N=100003", ss, {2.0 + s});
  }
  {
    auto gg = g;
    call("l2_backward", {ref(w)}, {ref(gg)}, at({{"N", N}, {"lambda", 0.01}}));
    std::vector<double> r(N);
    for (int i = 0; i < N; ++i) r[i] = g[i] + 0.01 * w[i];
    checkClose("l2_backward", gg, r);
  }
  {
    double s = 0;
    for (float v : g) s += (double)v * v;
    std::vector<float> sv = {(float)s};
    auto gg = g;
    call("clip_by_norm", {ref(sv)}, {ref(gg)}, at({{"N", N}, {"clipNorm", 5.0}}));
    std::vector<double> r(N);
    double f = std::min(1.0, 5.0 / std::sqrt((double)sv[0]));
    for (int i = 0; i < N; ++i) r[i] = g[i] * f;
    report(f < 1, "clip_by_norm test really clips (factor " + std::to_string(f) + ")");
    checkClose("clip_by_norm clipping", gg, r);
    gg = g;
    call("clip_by_norm", {ref(sv)}, {ref(gg)}, at({{"N", N}, {"clipNorm", 1e6}}));
    report(gg == g, "clip_by_norm below threshold leaves g unchanged");
    std::vector<float> zero = {0.f};
    call("clip_by_norm", {ref(zero)}, {ref(gg)}, at({{"N", N}, {"clipNorm", 1.0}}));
    report(gg == g, "clip_by_norm with s=0 leaves g unchanged");
  }
  {
    std::vector<float> x(N, std::nanf(""));
    call("fill", {}, {ref(x)}, at({{"N", N}, {"value", -2.5}}));
    checkClose("fill", x, std::vector<double>(N, -2.5));
    auto y = w;
    call("scale", {}, {ref(y)}, at({{"N", N}, {"factor", 0.3}}));
    std::vector<double> r(N);
    for (int i = 0; i < N; ++i) r[i] = w[i] * 0.3;
    checkClose("scale", y, r);
    y = w;
    call("axpy", {ref(g)}, {ref(y)}, at({{"N", N}, {"alpha", -0.7}}));
    for (int i = 0; i < N; ++i) r[i] = w[i] - 0.7 * g[i];
    checkClose("axpy", y, r);
    std::vector<float> src = w;
    uint32_t nanBits = 0x7fc01234u;  // a NaN payload must survive a bit-exact copy
    std::memcpy(&src[5], &nanBits, 4);
    std::vector<float> dst(N, 0.f);
    call("copy", {ref(src)}, {ref(dst)}, at({{"N", N}}));
    report(std::memcmp(src.data(), dst.data(), N * 4) == 0, "copy bit-exact (incl. NaN payload)");
  }
}

void testOptim() {
  const int N = 4099;
  auto g = rnd(N), w0 = rnd(N), v0 = rnd(N, 0.0f, 0.5f), m0 = rnd(N);
  for (auto& v : v0) v = std::fabs(v);  // adam's v is non-negative
  std::vector<float> hyper = {0.05f, 7.f, 0.25f};
  {
    auto w = w0;
    call("sgd_update", {ref(g), ref(hyper)}, {ref(w)}, at({{"N", N}}));
    std::vector<double> r(N);
    for (int i = 0; i < N; ++i) r[i] = w0[i] - 0.05 * g[i];
    checkClose("sgd_update", w, r);
  }
  for (int nest = 0; nest < 2; ++nest) {
    auto w = w0, v = m0;
    call("momentum_update", {ref(g), ref(hyper)}, {ref(w), ref(v)}, at({{"N", N}, {"momentum", 0.9}, {"nesterov", nest}}));
    std::vector<double> rw(N), rv(N);
    for (int i = 0; i < N; ++i) {
      rv[i] = 0.9 * m0[i] + g[i];
      rw[i] = w0[i] - (double)hyper[0] * (nest ? g[i] + 0.9 * rv[i] : rv[i]);
    }
    checkClose(std::string("momentum_update w nesterov=") + (nest ? "1" : "0"), w, rw);
    checkClose(std::string("momentum_update v nesterov=") + (nest ? "1" : "0"), v, rv);
  }
  {
    auto w = w0, m = m0, v = v0;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, t = hyper[1];
    call("adam_update", {ref(g), ref(hyper)}, {ref(w), ref(m), ref(v)},
         at({{"N", N}, {"beta1", b1}, {"beta2", b2}, {"epsilon", eps}}));
    double lrt = (double)hyper[0] * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    std::vector<double> rw(N), rm(N), rv(N);
    for (int i = 0; i < N; ++i) {
      rm[i] = b1 * m0[i] + (1 - b1) * g[i];
      rv[i] = b2 * v0[i] + (1 - b2) * (double)g[i] * g[i];
      rw[i] = w0[i] - lrt * rm[i] / (std::sqrt(rv[i]) + eps);
    }
    checkClose("adam_update w", w, rw);
    checkClose("adam_update m", m, rm);
    checkClose("adam_update v", v, rv);
  }
  {
    auto s = m0;
    call("ema_update", {ref(w0)}, {ref(s)}, at({{"N", N}, {"decay", 0.99}}));
    std::vector<double> r(N);
    for (int i = 0; i < N; ++i) r[i] = 0.99 * m0[i] + 0.01 * w0[i];
    checkClose("ema_update", s, r);
  }
}

void testInput() {
  const int R = 50, D = 33, B = 17;
  std::vector<uint8_t> src(R * D);
  std::uniform_int_distribution<int> u(1, 255);
  for (auto& v : src) v = (uint8_t)u(g_rng);
  auto idx = rndInt(B, R);
  idx[0] = R - 1;
  std::vector<float> y((size_t)B * D, std::nanf(""));
  call("gather_rows_u8", {ref(src), ref(idx)}, {ref(y)}, at({{"B", B}, {"D", D}, {"R", R}, {"scale", 1.0 / 255}}));
  std::vector<double> r((size_t)B * D);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < D; ++j) r[b * D + j] = src[idx[b] * D + j] / 255.0;
  checkClose("gather_rows_u8", y, r);
  auto srcf = rnd((size_t)R * D);
  call("gather_rows_f32", {ref(srcf), ref(idx)}, {ref(y)}, at({{"B", B}, {"D", D}, {"R", R}}));
  bool ok = true;
  for (int b = 0; b < B; ++b) ok &= std::memcmp(&y[b * D], &srcf[idx[b] * D], D * 4) == 0;
  report(ok, "gather_rows_f32 (exact)");
  std::vector<uint8_t> lsrc(R);
  for (auto& v : lsrc) v = (uint8_t)u(g_rng);
  std::vector<int32_t> ly(B, -1);
  call("gather_labels_u8", {ref(lsrc), ref(idx)}, {ref(ly)}, at({{"B", B}, {"R", R}}));
  ok = true;
  for (int b = 0; b < B; ++b) ok &= ly[b] == lsrc[idx[b]];
  report(ok, "gather_labels_u8 (exact)");
}

// Bad input must throw tl::Error (naming what is wrong) and leave every output untouched.
void expectThrow(const std::string& what, const std::function<void()>& f, const std::vector<std::vector<float>*>& outs,
                 const char* mustMention) {
  std::vector<std::vector<float>> before;
  for (auto* o : outs) before.push_back(*o);
  std::string msg = "(no exception)";
  bool threw = false;
  try {
    f();
  } catch (const tl::Error& e) {
    threw = true;
    msg = e.what();
  } catch (const std::exception& e) {
    msg = std::string("wrong exception type: ") + e.what();
  }
  bool unchanged = true;
  for (size_t i = 0; i < outs.size(); ++i)
    unchanged &= std::memcmp(before[i].data(), outs[i]->data(), before[i].size() * 4) == 0;
  const bool mentions = msg.find(mustMention) != std::string::npos && msg.find("cpu:test") != std::string::npos;
  report(threw && unchanged && mentions, "throws: " + what + "  [" + msg + "]");
}

void testErrors() {
  const int B = 4, I = 3, O = 2, C = 3;
  auto x = rnd(B * I), W = rnd(I * O), b = rnd(O), y = rnd(B * O);
  auto Wsmall = rnd(I * O - 1);
  expectThrow("dense_forward with W too small", [&] {
    call("dense_forward", {ref(x), ref(Wsmall), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "(I,O)");
  auto ysmall = rnd(B * O - 1);
  expectThrow("dense_forward with y too small", [&] {
    call("dense_forward", {ref(x), ref(W), ref(b)}, {ref(ysmall)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&ysmall}, "(B,O)");
  auto dW = rnd(I * O), db = rnd(O), dxs = rnd(B * I - 1);
  expectThrow("dense_backward with dx too small", [&] {
    call("dense_backward", {ref(x), ref(W), ref(y)}, {ref(dW), ref(db), ref(dxs)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&dW, &db, &dxs}, "dx");
  expectThrow("dense_forward missing attribute O", [&] {
    call("dense_forward", {ref(x), ref(W), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}}));
  }, {&y}, "'O'");
  expectThrow("dense_forward with 2 inputs", [&] {
    call("dense_forward", {ref(x), ref(W)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "input");
  std::vector<int32_t> xi(B * I, 1);
  expectThrow("dense_forward with i32 x", [&] {
    call("dense_forward", {ref(xi), ref(W), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "f32");

  auto logits = rnd(B * C);
  std::vector<int32_t> labels = {0, 2, 3, 1};  // row 2 has label 3, outside [0,3)
  std::vector<float> hyper = {0.1f, 1.f, 0.25f}, loss = {7.f}, probs = rnd(B * C);
  expectThrow("softmax_xent_forward label out of range", [&] {
    call("softmax_xent_forward", {ref(logits), ref(labels), ref(hyper)}, {ref(loss), ref(probs)}, at({{"B", B}, {"C", C}}));
  }, {&loss, &probs}, "row=2 is 3");
  labels = {0, -1, 1, 1};
  auto dl = rnd(B * C);
  expectThrow("softmax_xent_backward negative label", [&] {
    call("softmax_xent_backward", {ref(probs), ref(labels), ref(hyper)}, {ref(dl)}, at({{"B", B}, {"C", C}}));
  }, {&dl}, "row=1 is -1");
  std::vector<float> cnt = {3.f};
  expectThrow("accuracy_count label out of range", [&] {
    call("accuracy_count", {ref(logits), ref(labels)}, {ref(cnt)}, at({{"B", B}, {"C", C}}));
  }, {&cnt}, "row=1 is -1");
  std::vector<float> shortHyper = {0.1f};
  expectThrow("softmax_xent_forward short hyper", [&] {
    labels = {0, 1, 2, 0};
    call("softmax_xent_forward", {ref(logits), ref(labels), ref(shortHyper)}, {ref(loss), ref(probs)}, at({{"B", B}, {"C", C}}));
  }, {&loss, &probs}, "hyper");

  std::vector<uint8_t> src(5 * 4, 9);
  std::vector<int32_t> idx = {0, 4, 1, 5};  // b=3 -> 5, outside [0,5)
  auto gy = rnd(4 * 4);
  expectThrow("gather_rows_u8 index out of range (last row)", [&] {
    call("gather_rows_u8", {ref(src), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}, {"scale", 1.0}}));
  }, {&gy}, "b=3 is 5");
  auto srcf = rnd(5 * 4);
  expectThrow("gather_rows_f32 index out of range", [&] {
    call("gather_rows_f32", {ref(srcf), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}}));
  }, {&gy}, "b=3 is 5");
  std::vector<uint8_t> srcSmall(5 * 4 - 1, 9);
  idx = {0, 1, 2, 3};
  expectThrow("gather_rows_u8 src smaller than (R,D)", [&] {
    call("gather_rows_u8", {ref(srcSmall), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}, {"scale", 1.0}}));
  }, {&gy}, "(R,D)");
  std::vector<int32_t> lab(4, -7);
  std::vector<uint8_t> lsrc(5, 1);
  idx = {0, 1, 2, -1};
  bool ok = false;
  try {
    call("gather_labels_u8", {ref(lsrc), ref(idx)}, {ref(lab)}, at({{"B", 4}, {"R", 5}}));
  } catch (const tl::Error& e) {
    ok = lab == std::vector<int32_t>(4, -7) && std::string(e.what()).find("b=3 is -1") != std::string::npos;
  }
  report(ok, "throws: gather_labels_u8 negative index, labels untouched");

  auto w = rnd(10), g9 = rnd(9);
  expectThrow("sgd_update g too small", [&] {
    call("sgd_update", {ref(g9), ref(hyper)}, {ref(w)}, at({{"N", 10}}));
  }, {&w}, "(N)");
  auto mm = rnd(10), vv = rnd(10), g10 = rnd(10), v9 = rnd(9);
  expectThrow("adam_update v too small", [&] {
    call("adam_update", {ref(g10), ref(hyper)}, {ref(w), ref(mm), ref(v9)},
         at({{"N", 10}, {"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-8}}));
  }, {&w, &mm, &v9}, "v ");
  expectThrow("fill with negative N", [&] { call("fill", {}, {ref(w)}, at({{"N", -1}, {"value", 1}})); }, {&w}, "'N'");
  expectThrow("relu_forward N=2.5", [&] { call("relu_forward", {ref(w)}, {ref(mm)}, at({{"N", 2.5}})); }, {&mm}, "'N'");
}

void testRegistry() {
  const char* names[] = {"dense_forward", "dense_backward", "relu_forward", "relu_backward", "sigmoid_forward",
                         "sigmoid_backward", "tanh_forward", "tanh_backward", "softmax_xent_forward",
                         "softmax_xent_backward", "mean_forward", "mean_backward", "accuracy_count", "l2_loss",
                         "l2_backward", "sum_squares", "clip_by_norm", "fill", "scale", "axpy", "copy", "sgd_update",
                         "momentum_update", "adam_update", "ema_update", "gather_rows_u8", "gather_rows_f32",
                         "gather_labels_u8"};
  std::string missing;
  for (auto* n : names)
    if (!cpuKernels().find(n)) missing += std::string(" ") + n;
  // Other files (e.g. kernels_conv.cc) may register more kernels; every one checked here must be present and non-null.
  bool nonNull = true;
  for (const auto& kv : cpuKernels().fns) nonNull &= kv.second != nullptr;
  report(missing.empty() && nonNull,
         "registry holds all " + std::to_string(sizeof(names) / sizeof(names[0])) +
             " layer/elementwise/optimizer/input kernels (table has " + std::to_string(cpuKernels().fns.size()) + ")" +
             (missing.empty() ? "" : "; missing:" + missing));
}

}  // namespace

int main(int argc, char** argv) {
  const bool bench = !(argc > 1 && std::strcmp(argv[1], "--no-bench") == 0);
  std::printf("sgemm implementation: %s\n", gemmImplName());
  testRegistry();
  testGemm(sgemm, "sgemm");
  testGemm(sgemmBuiltin, "sgemmBuiltin 1 thread");
  setGemmThreads(2);
  testGemm(sgemmBuiltin, "sgemmBuiltin 2 threads");
  testGemm(sgemm, "sgemm 2 threads");
  testGemmConcurrent(sgemmBuiltin, "sgemmBuiltin");
  testGemmConcurrent(sgemm, "sgemm");
  setGemmThreads(1);
  testDense();
  testUnary("relu_forward", "relu_backward", [](double x) { return x > 0 ? x : 0; },
            [](double y, double dy) { return y > 0 ? dy : 0; }, 3.f);
  testUnary("sigmoid_forward", "sigmoid_backward", [](double x) { return 1 / (1 + std::exp(-x)); },
            [](double y, double dy) { return dy * y * (1 - y); }, 3.f);
  testUnary("sigmoid_forward", "sigmoid_backward", [](double x) { return 1 / (1 + std::exp(-x)); },
            [](double y, double dy) { return dy * y * (1 - y); }, 200.f);
  testUnary("tanh_forward", "tanh_backward", [](double x) { return std::tanh(x); },
            [](double y, double dy) { return dy * (1 - y * y); }, 3.f);
  testSoftmaxMeanAcc();
  testElementwise();
  testOptim();
  testInput();
  testErrors();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  if (bench) {
    benchGemm();
    setGemmThreads(2);
    benchGemm();
    setGemmThreads(1);
  }
  return g_fail == 0 ? 0 : 1;
}
