// Thread affinity (cpp/affinity.h).
#include "affinity.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "check.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace tl {

std::string cpuList(const std::vector<int>& cpus) {
  std::string s;
  for (size_t i = 0; i < cpus.size(); ++i) s += (i ? "," : "") + std::to_string(cpus[i]);
  return s;
}

#if defined(__linux__)
bool affinitySupported() { return true; }

std::vector<int> threadCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

void pinThread(const std::vector<int>& cpus) {
  TL_CHECK(!cpus.empty(), "pinThread: expected at least one CPU, got none");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) {
    TL_CHECK(c >= 0 && c < CPU_SETSIZE, "pinThread: CPU " << c << " is outside [0, " << CPU_SETSIZE << ")");
    CPU_SET(c, &set);
  }
  // sched_setaffinity(0) sets the calling thread's mask only (Linux affinity is per thread).
  TL_CHECK(sched_setaffinity(0, sizeof set, &set) == 0,
           "pinThread: could not pin this thread to CPUs " << cpuList(cpus) << ": " << std::strerror(errno)
                                                           << " (a CPU this process may not use? see `taskset -p $PID`; "
                                                              "or leave placement off: drop layout.pin / --pin)");
}
#else
bool affinitySupported() { return false; }
std::vector<int> threadCpus() { return {}; }
void pinThread(const std::vector<int>& cpus) {
  TL_CHECK(false, "pinThread: this platform has no thread affinity, so CPUs " << cpuList(cpus)
                                                                               << " cannot be reserved; drop layout.pin / --pin (placement is Linux only)");
}
#endif

int machineThreads() {
  static const int n = [] {
    const std::vector<int> cpus = threadCpus();
    return cpus.empty() ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) : static_cast<int>(cpus.size());
  }();
  return n;
}

}  // namespace tl
