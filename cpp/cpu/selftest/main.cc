// Standalone self-test of the CPU kernels and sgemm against float64 references; built by cpp/cpu/selftest.sh.
#include <cstdio>
#include <cstring>

#include "selftest.h"

using namespace selftest;

int main(int argc, char** argv) {
  const bool bench = !(argc > 1 && std::strcmp(argv[1], "--no-bench") == 0);
  std::printf("sgemm implementation: %s\n", tl::gemmImplName());
  testRegistry();
  testGemmAll();
  testDense();
  testUnaryAll();
  testSoftmaxMeanAcc();
  testElementwise();
  testOptim();
  testInput();
  testErrors();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  if (bench) benchGemmAll();
  return g_fail == 0 ? 0 : 1;
}
