// Pinning host threads to CPUs (Note [Thread placement] in src/tower-port/thread-placement.ts decides where; this only
// carries it out). Linux only: elsewhere threadCpus() is empty and pinThread() refuses.
#pragma once
#include <string>
#include <vector>

namespace tl {

// Whether this platform lets a thread be pinned to CPUs.
bool affinitySupported();
// The CPUs the calling thread may run on, ascending; empty where the platform has no thread affinity.
std::vector<int> threadCpus();
// Restricts the calling thread to `cpus` (non-empty, each in [0, 1024)). Throws naming the CPUs and the OS error
// (e.g. a CPU outside the process's cgroup or cpuset).
void pinThread(const std::vector<int>& cpus);
// The hardware threads this process may run on, read once per process (hot paths ask: Note [Spin for the next
// task]): the CPUs in the affinity mask of the thread that asks first, as Node's
// os.availableParallelism() counts them, so a container limited to a cpuset is not taken for the whole host (the
// layout sizes GEMM threads from the JS count; the barriers and the GEMM pool decide to yield from this one). The
// addon asks at load, on the thread loading it, before placement pins any thread (Note [Thread placement]).
// std::thread::hardware_concurrency() where the platform has no thread affinity; at least 1.
int machineThreads();
// "0,1,3" for messages.
std::string cpuList(const std::vector<int>& cpus);

}  // namespace tl
