// Self-test support: the CPU backend, random data, errors and the kernel call path (selftest.h).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "../../kernel_contract.h"
#include "selftest.h"

namespace selftest {

namespace {
const std::unique_ptr<Backend> g_dev = makeCpuBackend(0);  // the real CPU backend: kernels see "cpu:0"
}  // namespace

int g_fail = 0, g_pass = 0;
std::mt19937 g_rng(1234);

void report(bool ok, const std::string& what, double err) {
  (ok ? g_pass : g_fail)++;
  if (err >= 0)
    std::printf("%s %-58s relerr=%.3g\n", ok ? "PASS" : "FAIL", what.c_str(), err);
  else
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
}

// Random non-zero values with magnitude in [lo, hi] and random sign.
std::vector<float> rnd(size_t n, float lo, float hi) {
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

void checkClose(const std::string& what, const std::vector<float>& a, const std::vector<double>& ref, double tol) {
  double e = relErr(a, ref);
  report(e < tol, what, e);
}

TensorRef ref(std::vector<float>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::F32; return t; }
TensorRef ref(std::vector<int32_t>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::I32; return t; }
TensorRef ref(std::vector<uint8_t>& v) { TensorRef t; t.data = v.data(); t.numel = (int64_t)v.size(); t.dtype = DType::U8; return t; }

void call(const std::string& op, std::vector<TensorRef> in, std::vector<TensorRef> out, const Attrs& a) {
  KernelFn f = cpuKernels().find(op);
  if (!f) throw std::runtime_error("kernel not registered: " + op);
  KernelCall c{*g_dev, op, in, out, a};
  const std::unique_ptr<KernelArgs> parsed = checkKernelCall(c);  // compile time (see Note [Kernel contracts])
  c.parsed = parsed.get();
  f(c);
}

Attrs at(std::initializer_list<std::pair<const std::string, double>> kv) { Attrs a; a.values = kv; return a; }

}  // namespace selftest
