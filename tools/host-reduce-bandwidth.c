// Diagnostic for the 64 MB ring busbw row of `npm run bench -- allreduce`: what this machine's memory system allows a
// 2-tower all-reduce in one process, without towerline. Two threads run the host transport's fused step
// (cpp/collective/transport_host.cc, reduceAndPush: each sums its half of two 64 MB buffers and stores the sum into
// both), timed against one thread's memcpy of 64 MB, interleaved, means over 50 calls each. busbw of a 2-tower
// all-reduce = message bytes / time. Variants: the transport's plain loop, AVX2 stores, and streaming (non-temporal)
// stores; and, for scale, two threads copying 32 MB each at once. An all-reduce reads and writes both buffers, twice
// a memcpy's bytes, so busbw >= 0.8 x memcpy needs the two threads to move bytes at 1.6x one thread's copy rate;
// where two threads copying together move no more than one (the AVX2 VM of 2026-12-01: 8.8 against 11.1 GB/s), no
// loop gets there (there: plain 0.59-0.63, AVX2 0.60-0.63, streaming 0.36-0.37).
//   cc -O3 -fno-math-errno -fno-trapping-math -ffp-contract=off tools/host-reduce-bandwidth.c -o /tmp/hrb -lpthread
//   /tmp/hrb
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ELEMS (16L * 1024 * 1024)  // 64 MB of f32
#define CALLS 10
#define ROUNDS 6                    // the first is a warm-up

static float *bufA, *bufB, *bufC;
static pthread_barrier_t bar;
static volatile int variant;

static double nowS(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// The transport's loop, compiled for the baseline ISA as the addon is.
__attribute__((noinline)) static void plainStep(float* d, float* s, long n) {
#pragma GCC ivdep
  for (long i = 0; i < n; ++i) {
    const float v = d[i] + s[i];
    d[i] = v;
    s[i] = v;
  }
}

__attribute__((noinline, target("avx2"))) static void avx2Step(float* d, float* s, long n) {
  for (long i = 0; i < n; i += 8) {
    const __m256 v = _mm256_add_ps(_mm256_load_ps(d + i), _mm256_load_ps(s + i));
    _mm256_store_ps(d + i, v);
    _mm256_store_ps(s + i, v);
  }
}

__attribute__((noinline, target("avx2"))) static void streamingStep(float* d, float* s, long n) {
  for (long i = 0; i < n; i += 8) {
    const __m256 v = _mm256_add_ps(_mm256_load_ps(d + i), _mm256_load_ps(s + i));
    _mm256_stream_ps(d + i, v);
    _mm256_stream_ps(s + i, v);
  }
  _mm_sfence();
}

static void* tower(void* arg) {
  const long rank = (long)arg, half = ELEMS / 2;
  float* mine = rank ? bufB : bufA;
  float* peer = rank ? bufA : bufB;
  for (;;) {
    pthread_barrier_wait(&bar);
    if (variant < 0) return NULL;
    float *d = mine + rank * half, *s = peer + rank * half;
    if (variant == 0) plainStep(d, s, half);
    else if (variant == 1) avx2Step(d, s, half);
    else if (variant == 2) streamingStep(d, s, half);
    else memcpy(bufC + rank * half, d, half * 4);  // each thread copies 32 MB: what 2 cores copy together
    pthread_barrier_wait(&bar);
  }
}

static float* alloc64MB(void) {
  void* p = NULL;
  if (posix_memalign(&p, 2 << 20, ELEMS * 4) != 0) exit(1);
  madvise(p, ELEMS * 4, MADV_HUGEPAGE);  // as the CPU backend allocates
  return p;
}

int main(void) {
  bufA = alloc64MB();
  bufB = alloc64MB();
  bufC = alloc64MB();
  for (long i = 0; i < ELEMS; ++i) bufA[i] = 1, bufB[i] = 2, bufC[i] = 0;
  pthread_barrier_init(&bar, NULL, 3);
  pthread_t th[2];
  for (long r = 0; r < 2; ++r) pthread_create(&th[r], NULL, tower, (void*)r);
  double total[5] = {0};  // variants 0..3, then memcpy
  for (int round = 0; round < ROUNDS; ++round) {
    double t0 = nowS();
    for (int k = 0; k < CALLS; ++k) memcpy(bufC, bufA, ELEMS * 4);
    if (round) total[4] += nowS() - t0;
    for (int v = 0; v < 4; ++v) {
      variant = v;
      t0 = nowS();
      for (int k = 0; k < CALLS; ++k) {
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
      }
      if (round) total[v] += nowS() - t0;
    }
  }
  const double calls = CALLS * (ROUNDS - 1), bytes = ELEMS * 4.0;
  printf("memcpy, 1 thread, 64 MB: %.2f GB/s copied\n", bytes / (total[4] / calls) / 1e9);
  printf("memcpy, 2 threads, 32 MB each: %.2f GB/s copied in all\n", bytes / (total[3] / calls) / 1e9);
  const char* names[3] = {"plain loop (the transport's)", "AVX2 stores", "streaming stores"};
  for (int v = 0; v < 3; ++v)
    printf("2 threads, fused reduce-and-push, %-28s busbw %.2f GB/s, %.2f x memcpy\n", names[v], bytes / (total[v] / calls) / 1e9,
           total[4] / total[v]);
  variant = -1;
  pthread_barrier_wait(&bar);
  for (int r = 0; r < 2; ++r) pthread_join(th[r], NULL);
  return 0;
}
