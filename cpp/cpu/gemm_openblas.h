// OpenBLAS found at run time (dlopen), so one addon binary runs with or without it: Note [OpenBLAS at run time].
#pragma once
#include <string>

namespace tl {

// The two OpenBLAS entry points the CPU backend uses, or nulls when the library is absent or disabled.
// Argument types follow cblas.h (32-bit blasint; enums passed as int: CblasRowMajor = 101, NoTrans = 111, Trans = 112).
struct OpenBlas {
  using Sgemm = void (*)(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
                         const float* B, int ldb, float beta, float* C, int ldc);
  using SetThreads = void (*)(int n);
  Sgemm sgemm = nullptr;
  SetThreads setThreads = nullptr;
  // What computes: openblas_get_config() and openblas_get_corename(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... core
  // Haswell" (the kernels OpenBLAS picked for this CPU); empty when not loaded.
  std::string kernel;
  // Why: "dlopen <path>" when loaded, else the reason it is not used ("libopenblas.so.0 not found", "disabled by ...").
  std::string detail;
};

constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

// Loads OpenBLAS once (thread-safe), on first use. TOWERLINE_OPENBLAS=0 disables it; a path picks that library.
const OpenBlas& openBlas();

}  // namespace tl
