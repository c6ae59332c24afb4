// Single-precision GEMM used by the CPU kernels: OpenBLAS when it loads at run time, else a built-in packed AVX2/FMA
// kernel (scalar on CPUs without AVX2/FMA). Note [OpenBLAS at run time] in gemm_openblas.cc.
#pragma once

namespace tl {

// Row-major: C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C. op(X) = X^T when transX.
// beta == 0 never reads C (it may hold garbage or NaN). lda/ldb/ldc are row strides of the stored matrices.
void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// The built-in kernel, always compiled so tests can check it even when sgemm() dispatches to OpenBLAS.
void sgemmBuiltin(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);

// "openblas (dlopen <path>)", or "builtin-avx2" / "builtin-scalar" with why OpenBLAS is not used, e.g.
// "builtin-avx2 (libopenblas.so.0 not found)".
const char* gemmImplName();
void setGemmThreads(int n);  // n < 1 is treated as 1
int gemmThreads();

}  // namespace tl
