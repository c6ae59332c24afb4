// The CPU kernels' ISA path, chosen once per process (Note [Kernel ISA] in isa.h).
#include "isa.h"

#include <cstdlib>
#include <cstring>

#include "../check.h"

namespace tl {
namespace cpuk {

namespace {

bool cpuHas(Isa isa) {
#ifdef TL_ISA_X86
  __builtin_cpu_init();  // libgcc's checks include the OS saving the ymm/zmm state (XGETBV)
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2");
    case Isa::Avx512: return __builtin_cpu_supports("avx512f");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

std::string names(const std::vector<Isa>& isas) {
  std::string s;
  for (Isa i : isas) s += (s.empty() ? "" : ", ") + std::string(isaName(i));
  return s;
}

Isa choose() {
  const std::vector<Isa> have = availableIsas();
  const char* env = std::getenv("TOWERLINE_ISA");
  if (!env || !*env) return have.back();
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (std::strcmp(env, isaName(i)) == 0) {
      TL_CHECK(cpuHas(i), "TOWERLINE_ISA=" << env << " asks for the " << env << " kernels, but this CPU (or this build) "
                                          << "runs only " << names(have) << "; unset TOWERLINE_ISA or pick one of these");
      return i;
    }
  TL_FAIL("TOWERLINE_ISA=" << env << " is not a kernel path; expected one of scalar, avx2, avx512 (this CPU runs "
                           << names(have) << "), or unset it for the widest");
}

}  // namespace

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

std::vector<Isa> availableIsas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (cpuHas(i)) out.push_back(i);
  return out;
}

Isa kernelIsa() {
  static const Isa isa = choose();  // a throw leaves it unset: every later call reports the same error
  return isa;
}

}  // namespace cpuk
}  // namespace tl
