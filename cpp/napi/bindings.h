// The addon's exports, one registration function per concern (cpp/addon.cc calls them all).
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace tl {
namespace napi {

// backendKinds, deviceCount, openDevice, closeDevice, alloc, allocView, allocShared, canShare, free, bufferInfo, write, read, sync,
// kernelNames, stats, nowMs (devices.cc)
void registerDeviceBindings(Napi::Env env, Napi::Object exports);
// compile, run, runWith, releaseProgram, programStatus (programs.cc)
void registerProgramBindings(Napi::Env env, Napi::Object exports);
// createComm, setCommSchedule, releaseComm, commStats, validateSchedule (comms.cc)
void registerCommBindings(Napi::Env env, Napi::Object exports);
// gemmInfo, setDeviceGemmThreads, deviceGemmThreads (gemm.cc)
void registerGemmBindings(Napi::Env env, Napi::Object exports);
// affinitySupported, threadCpus, pinThread, deviceThreadCpus (affinity.cc; Note [Thread placement])
void registerAffinityBindings(Napi::Env env, Napi::Object exports);
std::vector<int> cpusArg(Napi::Env env, const Napi::Value& v, const std::string& what);
// contract, kernelIsa (contract.cc)
void registerContractBindings(Napi::Env env, Napi::Object exports);
// topology, p2pSelfTest, setP2PEnabled (gpu.cc; what they do comes from the GPU inspection hook)
void registerGpuBindings(Napi::Env env, Napi::Object exports);
// groupSupport, createGroup, groupInfo, groupBarrier, groupAllGather, groupBroadcast, groupAllReduce,
// attachCommGroup, abortGroup, closeGroup (group.cc; process groups on Gloo, Note [Optional Gloo])
void registerGroupBindings(Napi::Env env, Napi::Object exports);
// psCreate, psPull, psPush, psDrop, psInfo, psSnapshot, psRelease (ps.cc), and the parameter-server links across
// processes: psLink* (ps_link.cc; Note [Parameter server] in cpp/ps/server.h)
void registerPsBindings(Napi::Env env, Napi::Object exports);
void registerPsLinkBindings(Napi::Env env, Napi::Object exports);

struct Export {
  const char* name;
  Napi::Function::Callback fn;
};
inline void exportAll(Napi::Env env, Napi::Object exports, std::initializer_list<Export> fns) {
  for (const Export& e : fns) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace napi
}  // namespace tl
