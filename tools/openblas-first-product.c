// Diagnostic for Note [OpenBLAS's first product] (cpp/cpu/gemm.cc): times one narrow NN product (128x128x784, one of
// the MNIST step's 128-column slabs) after a first product of the given shape, in a fresh process, on OpenBLAS at
// one thread. Where the effect exists, a small first shape leaves the narrow product about twice as slow as a large one.
//   cc -O2 tools/openblas-first-product.c -o /tmp/ofp -ldl
//   for s in "128 128 784" "256 512 512"; do /tmp/ofp $s; done
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*Sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

static double nowMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s M N K   (the shape of the first product)\n", argv[0]);
    return 2;
  }
  void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "libopenblas.so.0: %s\n", dlerror());
    return 1;
  }
  Sgemm sgemm = (Sgemm)dlsym(h, "cblas_sgemm");
  void (*setThreads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  if (!sgemm || !setThreads) {
    fprintf(stderr, "libopenblas.so.0 lacks cblas_sgemm or openblas_set_num_threads\n");
    return 1;
  }
  setThreads(1);
  const int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
  float* a = malloc(sizeof(float) * (16u << 20));
  if (!a || M <= 0 || N <= 0 || K <= 0 || (size_t)M * K > (4u << 20) || (size_t)K * N > (4u << 20) || (size_t)M * N > (4u << 20)) {
    fprintf(stderr, "M, N, K: positive, with each operand at most 4M floats\n");
    return 2;
  }
  float *b = a + (4u << 20), *c = a + (8u << 20);
  for (size_t i = 0; i < (16u << 20); i++) a[i] = (float)rand() / (float)RAND_MAX;
  enum { RowMajor = 101, NoTrans = 111 };
  sgemm(RowMajor, NoTrans, NoTrans, M, N, K, 1.f, a, K, b, N, 0.f, c, N);  // the first product
  double best = 1e9;
  for (int i = 0; i < 20; i++) {
    const double t = nowMs();
    sgemm(RowMajor, NoTrans, NoTrans, 128, 128, 784, 1.f, a, 784, b, 500, 0.f, c, 500);
    const double d = nowMs() - t;
    if (d < best) best = d;
  }
  printf("first product %dx%dx%d: then 128x128x784 (ldb 500) best of 20: %.3f ms (%.1f GFLOP/s)\n", M, N, K, best,
         2.0 * 128 * 128 * 784 / best / 1e6);
  free(a);
  return 0;
}
