// Picks the cuBLAS declarations: the real cublas_v2.h when cuBLAS was found, else the local stub (compile-only CI).
#pragma once
#if defined(TL_CUBLAS_STUB)
#include "cublas_stub.h"
#else
#include <cublas_v2.h>
#endif
