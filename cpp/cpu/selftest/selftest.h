// Shared pieces of the standalone CPU kernel self-test (built by cpp/cpu/selftest.sh): the CPU backend, random
// data, relative errors, and call(), which runs a kernel the way a compiled program does (contract check first).
#pragma once
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../../backend.h"
#include "../../hyper.h"
#include "../gemm.h"

namespace selftest {

using namespace tl;

extern int g_fail, g_pass;
extern std::mt19937 g_rng;

void report(bool ok, const std::string& what, double err = -1);
// Random non-zero values with magnitude in [lo, hi] and random sign.
std::vector<float> rnd(size_t n, float lo = 0.1f, float hi = 1.f);
std::vector<int32_t> rndInt(size_t n, int lim);
double relErr(const float* a, const std::vector<double>& ref);
double relErr(const std::vector<float>& a, const std::vector<double>& ref);
void checkClose(const std::string& what, const std::vector<float>& a, const std::vector<double>& ref, double tol = 1e-5);
TensorRef ref(std::vector<float>& v);
TensorRef ref(std::vector<int32_t>& v);
TensorRef ref(std::vector<uint8_t>& v);
// Runs kernel `op` on the test device: the contract check (what compile() does), then the kernel.
void call(const std::string& op, std::vector<TensorRef> in, std::vector<TensorRef> out, const Attrs& a);
Attrs at(std::initializer_list<std::pair<const std::string, double>> kv);

void testGemmAll();
void benchGemmAll();
void testDense();
void testUnaryAll();
void testSoftmaxMeanAcc();
void testElementwise();
void testOptim();
void testInput();
void testErrors();
void testRegistry();

}  // namespace selftest
