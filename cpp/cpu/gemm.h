// Single-precision GEMM used by the CPU kernels: OpenBLAS when available, else a built-in packed AVX2/FMA kernel.
#pragma once

namespace tl {

// Row-major: C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C. op(X) = X^T when transX.
// beta == 0 never reads C (it may hold garbage or NaN). lda/ldb/ldc are row strides of the stored matrices.
void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// The built-in kernel, always compiled so tests can check it even when sgemm() dispatches to OpenBLAS.
void sgemmBuiltin(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);

const char* gemmImplName();  // "openblas" or "builtin-avx2" / "builtin-scalar"
void setGemmThreads(int n);  // n < 1 is treated as 1
int gemmThreads();

}  // namespace tl
