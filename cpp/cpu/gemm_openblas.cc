// OpenBLAS found at run time: dlopen the shared library and look up cblas_sgemm, else the built-in GEMM is used.
#include "gemm_openblas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace tl {
namespace {

// Note [OpenBLAS at run time]
// The addon never links OpenBLAS: it dlopens it on the first GEMM. So the prebuilt addon shipped in the npm package
// (and a source build alike: one mechanism) runs on a machine without OpenBLAS, using the built-in AVX2/scalar kernel
// (cpp/cpu/gemm.cc), and at OpenBLAS's full speed where Debian's libopenblas0(-pthread) or any libopenblas.so.0 is
// installed. Only the 32-bit-integer interface is accepted (the INTERFACE64 builds rename their library anyway).
// gemmInfo().impl names the choice and its reason. TOWERLINE_OPENBLAS=0 turns it off (benchmarks, tests of the
// built-in kernel); TOWERLINE_OPENBLAS=/path/to/libopenblas.so picks one library and nothing else.

std::vector<std::string> candidates() {
  return {
      "libopenblas.so.0",  // Debian/Ubuntu (an alternatives link to openblas-pthread/ or openblas-openmp/), most others
      "libopenblasp.so.0", // Fedora/RHEL's pthread variant
      "libopenblas.so",    // a source-built OpenBLAS in the loader path (the dev link only)
#if defined(__x86_64__)
      "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
#elif defined(__aarch64__)
      "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
#endif
  };
}

// Tries one library; on success fills b and returns true, else appends why to `why` (a missing file only when
// `reportMissing`: the default candidates are expected to be absent).
bool tryLoad(const std::string& name, OpenBlas& b, std::string& why, bool reportMissing) {
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    // A candidate that is simply absent is expected; one that exists but fails to load (a missing libgfortran, say)
    // is reported, so gemmInfo() does not claim "not found" for an installed but broken library.
    const char* e = dlerror();
    std::string msg = e ? e : name + ": cannot be loaded";
    bool absent = msg.rfind(name + ": cannot open shared object file", 0) == 0;
    if (reportMissing || !absent) why += msg + "; ";
    return false;
  }
  auto sgemm = reinterpret_cast<OpenBlas::Sgemm>(dlsym(h, "cblas_sgemm"));
  auto setThreads = reinterpret_cast<OpenBlas::SetThreads>(dlsym(h, "openblas_set_num_threads"));
  auto config = reinterpret_cast<const char* (*)()>(dlsym(h, "openblas_get_config"));
  auto corename = reinterpret_cast<const char* (*)()>(dlsym(h, "openblas_get_corename"));
  if (!sgemm || !setThreads) {
    why += name + " lacks cblas_sgemm/openblas_set_num_threads; ";
    dlclose(h);
    return false;
  }
  if (config && std::strstr(config(), "USE64BITINT")) {
    why += name + " uses 64-bit integers; ";
    dlclose(h);
    return false;
  }
  Dl_info info{};
  const char* path = dladdr(reinterpret_cast<void*>(sgemm), &info) && info.dli_fname ? info.dli_fname : name.c_str();
  b.sgemm = sgemm;
  b.setThreads = setThreads;
  b.detail = std::string("dlopen ") + path;
  b.kernel = std::string(config ? config() : "OpenBLAS (no openblas_get_config)") + (corename ? std::string(" core ") + corename() : "");
  return true;  // the handle stays open for the life of the process
}

OpenBlas load() {
  OpenBlas b;
  const char* env = std::getenv("TOWERLINE_OPENBLAS");
  if (env && (!std::strcmp(env, "0") || !std::strcmp(env, "off") || !std::strcmp(env, "false"))) {
    b.detail = std::string("OpenBLAS disabled by TOWERLINE_OPENBLAS=") + env;
    return b;
  }
  std::string why;
  if (env && *env) {
    if (!tryLoad(env, b, why, true)) b.detail = std::string("TOWERLINE_OPENBLAS=") + env + ": " + why.substr(0, why.size() - 2);
    return b;
  }
  for (const auto& name : candidates())
    if (tryLoad(name, b, why, false)) return b;
  b.detail = why.empty() ? "libopenblas.so.0 not found" : why + "no usable OpenBLAS";
  return b;
}

}  // namespace

const OpenBlas& openBlas() {
  static const OpenBlas b = load();
  return b;
}

}  // namespace tl
