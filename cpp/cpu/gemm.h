// Single-precision GEMM used by the CPU kernels: OpenBLAS when it loads at run time, else a built-in packed AVX2/FMA
// kernel (scalar on CPUs without AVX2/FMA). Note [OpenBLAS at run time] in gemm_openblas.cc. Its threads belong to
// a device, not to the process: Note [GEMM threads] in gemm.cc.
#pragma once
#include <functional>
#include <memory>
#include <vector>

namespace tl {

// Row-major: C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C. op(X) = X^T when transX.
// beta == 0 never reads C (it may hold garbage or NaN). lda/ldb/ldc are row strides of the stored matrices.
// Runs on the calling thread's bound GemmThreads (one thread when none is bound).
void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// One product's arguments, as sgemm() takes them.
struct GemmCall {
  bool tA, tB;
  int M, N, K;
  float alpha;
  const float* A;
  int lda;
  const float* B;
  int ldb;
  float beta;
  float* C;
  int ldc;
};

// Several products at once, none reading or writing another's C: every slab of every product (each product cut as
// sgemm() cuts it) is handed to the calling thread's bound GemmThreads as one job, so products too small to cut run
// side by side. Each product's bits are sgemm()'s (the same slabs, the same single-threaded calls).
void sgemmMany(const GemmCall* calls, int n);

// One product computed by the calling thread alone, uncut (no slabs, no GemmThreads): for kernels that cut their work
// by shape themselves and hand the pieces to the device's threads (gemmForEach); Note [Conv chunks] in
// kernels_conv2d.cc. The bits depend on the arguments alone, as sgemm()'s do.
void sgemmAlone(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                int ldb, float beta, float* C, int ldc);

// Runs f(0..count-1), each index once, on the calling thread's bound GemmThreads (the calling thread alone when none
// is bound); rethrows the first error after all finished. f must not call sgemm() (use sgemmAlone) or gemmForEach.
void gemmForEach(int count, const std::function<void(int)>& f);

// The built-in kernel, always compiled so tests can check it even when sgemm() dispatches to OpenBLAS. Same slabs and
// threads as sgemm().
void sgemmBuiltin(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);

// "openblas (dlopen <path>)", or "builtin-avx2" / "builtin-scalar" with why OpenBLAS is not used, e.g.
// "builtin-avx2 (libopenblas.so.0 not found)".
const char* gemmImplName();
// What decides the bits of a product, without paths: "builtin-avx2", "builtin-scalar", or OpenBLAS's configuration
// and the core it picked ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64 core Haswell"). Two
// processes with the same kernel name compute the same bits (the run settings' layout records it).
const char* gemmKernelName();

constexpr int kMaxGemmThreads = 256;

// One device's GEMM threads: the device thread (participant 0) plus size()-1 pool threads. A CPU device owns one and
// binds it on its own thread; every sgemm a kernel calls there uses it. resize() runs on that thread, between kernels.
class GemmThreads {
 public:
  explicit GemmThreads(int n = 1);
  ~GemmThreads();
  GemmThreads(const GemmThreads&) = delete;
  GemmThreads& operator=(const GemmThreads&) = delete;
  int size() const;
  void resize(int n);  // n in [1, kMaxGemmThreads]; throws otherwise (a placement for another count is dropped)
  // Pins worker i (participants 1..size()-1) to masks[i-1], restarting the workers; empty: they inherit the device
  // thread's mask (Note [Thread placement] in src/tower-port/thread-placement.ts). Runs on the device thread.
  void setWorkerCpus(std::vector<std::vector<int>> masks);
  // While held (a step program runs on the device thread), idle workers spin longer for the next job (Note [Pool spin]).
  void hold(bool on);
  // Runs f on a worker spinning for its next job, else on the caller at once; in the order handed off (Note
  // [Hand-off to a spinning worker] in gemm_threads.cc).
  void handOff(std::function<void()> f);
  // Whether a worker is spinning for its next job now (a hint: it may stop at any time).
  bool spinning() const;
  // Each worker's CPU mask as it started (after its pin, if any).
  std::vector<std::vector<int>> workerCpus() const;
  // Makes this the calling thread's GEMM threads (nullptr unbinds: the thread computes alone).
  static void bind(GemmThreads* t);
  static GemmThreads* bound();
  // Runs f(0..count-1), each index once, spread over the threads; rethrows the first error after all finished.
  void forEach(int count, const std::function<void(int)>& f);

 private:
  class Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace tl
