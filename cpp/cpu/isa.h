// Per-ISA dispatch of the CPU kernels: each loop body is written once and compiled for the baseline ISA, AVX2 and
// AVX-512; one path is chosen per process (Note [Kernel ISA]).
#pragma once
#include <string>
#include <vector>

namespace tl {
namespace cpuk {

// Note [Kernel ISA]: the element loops of the CPU kernels (elementwise, optimizers, the fused tail, activations, LRN,
// max pooling, the row gather; kernels_sums.cc in intrinsics) are written once, as the always-inline `run` of a small
// struct, and compiled three times by perIsa<K>(...): runScalar (the architecture's baseline, SSE2 on x86-64: the
// portable fallback), runAvx2 and runAvx512 (GCC target attributes on those functions only, so no wider instruction can
// leak into code that runs before the check; tools/prebuild.mjs allows ymm/zmm registers only in functions whose names
// carry Avx2/Avx512). The path is chosen once per process, on first use: TOWERLINE_ISA=scalar|avx2|avx512 when set (an
// ISA this CPU lacks is an error naming the ones it has), else the widest this CPU and OS support (CPUID). Every tower
// of a process runs that path.
//
// Bit-identity. The addon is compiled with -ffp-contract=off (CMakeLists.txt) and these functions use no FMA, so every
// path performs the same IEEE single/double operations in the same order: the vectoriser may only lay equal operations
// side by side (it cannot reassociate without -ffast-math), vdivps/vsqrtps round exactly like divss/sqrtss, and the
// reductions keep 16 explicit partial sums in double, combined in one fixed tree, on every path. -fno-math-errno turns
// sqrt into the instruction (no errno branch) and -fno-trapping-math lets a select or a float-to-int conversion
// vectorise, neither changing a result. So these kernels give the same bits on every path: replicas of one process
// agree bit for bit, runs repeat bit for bit, and an AVX2 machine and an AVX-512 machine agree on these kernels
// (test/kernel-isa.test.ts forces each path this CPU has and compares). What is NOT covered across machines: the GEMM
// (OpenBLAS and the built-in kernel pick their own code per CPU, FMA included) and libm's exp/log/tanh where kernels
// still call them (softmax, tanh; glibc picks FMA variants by CPU; sigmoid uses Note [Vector exp] instead), so a whole
// training step is bit-identical on one machine, across processes and runs, but not between different CPUs.

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// The path of this process, chosen on first use; throws tl::Error when TOWERLINE_ISA names an unknown path or one
// this CPU lacks.
Isa kernelIsa();
const char* isaName(Isa isa);
// The paths this CPU and build can run, narrowest first ("scalar" always).
std::vector<Isa> availableIsas();

#define TL_ISA_INLINE __attribute__((always_inline)) inline

// K::run(args...) compiled for one ISA. K::run must be TL_ISA_INLINE and free of intrinsics (plain loops the
// compiler vectorises for the target of the function it is inlined into).
template <class K, class... A>
auto runScalar(A... a) {
  return K::run(a...);
}
#if defined(__x86_64__)
#define TL_ISA_X86 1
template <class K, class... A>
__attribute__((target("avx2"))) auto runAvx2(A... a) {
  return K::run(a...);
}
template <class K, class... A>
__attribute__((target("avx512f,prefer-vector-width=512"))) auto runAvx512(A... a) {
  return K::run(a...);
}
#endif

// K::run(args...) on this process's path (Note [Kernel ISA]).
template <class K, class... A>
inline auto perIsa(A... a) {
#ifdef TL_ISA_X86
  switch (kernelIsa()) {
    case Isa::Avx512: return runAvx512<K>(a...);
    case Isa::Avx2: return runAvx2<K>(a...);
    case Isa::Scalar: break;
  }
#endif
  return runScalar<K>(a...);
}

}  // namespace cpuk
}  // namespace tl
