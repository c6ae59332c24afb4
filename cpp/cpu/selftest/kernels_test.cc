// Self-test of the CPU kernels against float64 references: dense, activations, losses, elementwise, optimizers, input.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "selftest.h"

namespace selftest {


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

static void testUnary(const char* fwd, const char* bwd, std::function<double(double)> f, std::function<double(double, double)> g,
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
  rl[0] *= hyper[kHyperGradScale];
  checkClose("softmax_xent_forward probs B=37 C=10", probs, rp);
  checkClose("softmax_xent_forward loss", loss, rl);
  std::vector<float> dl((size_t)B * C, std::nanf(""));
  call("softmax_xent_backward", {ref(probs), ref(labels), ref(hyper)}, {ref(dl)}, at({{"B", B}, {"C", C}}));
  std::vector<double> rdl((size_t)B * C);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < C; ++j) rdl[r * C + j] = (double)hyper[kHyperGradScale] * (probs[r * C + j] - (j == labels[r] ? 1.0 : 0.0));
  checkClose("softmax_xent_backward", dl, rdl);

  auto x = rnd((size_t)B * C);
  std::vector<float> ml(1, std::nanf(""));
  call("mean_forward", {ref(x), ref(hyper)}, {ref(ml)}, at({{"B", B}, {"C", C}}));
  double s = 0;
  for (float v : x) s += v;
  checkClose("mean_forward", ml, {hyper[kHyperGradScale] * s / C});
  std::vector<float> mdx((size_t)B * C, std::nanf(""));
  call("mean_backward", {ref(hyper)}, {ref(mdx)}, at({{"B", B}, {"C", C}}));
  checkClose("mean_backward", mdx, std::vector<double>((size_t)B * C, (double)hyper[kHyperGradScale] / C));

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
      rw[i] = w0[i] - (double)hyper[kHyperLr] * (nest ? g[i] + 0.9 * rv[i] : rv[i]);
    }
    checkClose(std::string("momentum_update w nesterov=") + (nest ? "1" : "0"), w, rw);
    checkClose(std::string("momentum_update v nesterov=") + (nest ? "1" : "0"), v, rv);
  }
  {
    auto w = w0, m = m0, v = v0;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, t = hyper[kHyperStep];
    call("adam_update", {ref(g), ref(hyper)}, {ref(w), ref(m), ref(v)},
         at({{"N", N}, {"beta1", b1}, {"beta2", b2}, {"epsilon", eps}}));
    double lrt = (double)hyper[kHyperLr] * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
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

void testUnaryAll() {
  testUnary("relu_forward", "relu_backward", [](double x) { return x > 0 ? x : 0; },
            [](double y, double dy) { return y > 0 ? dy : 0; }, 3.f);
  testUnary("sigmoid_forward", "sigmoid_backward", [](double x) { return 1 / (1 + std::exp(-x)); },
            [](double y, double dy) { return dy * y * (1 - y); }, 3.f);
  testUnary("sigmoid_forward", "sigmoid_backward", [](double x) { return 1 / (1 + std::exp(-x)); },
            [](double y, double dy) { return dy * y * (1 - y); }, 200.f);
  testUnary("tanh_forward", "tanh_backward", [](double x) { return std::tanh(x); },
            [](double y, double dy) { return dy * (1 - y * y); }, 3.f);
}

}  // namespace selftest
