// GPU topology: devices from the CUDA runtime, pairwise P2P attributes, and link kinds from NVML when the driver's
// libnvidia-ml.so.1 can be loaded (dlopen at run time, so the addon loads and works without it).
#include <dlfcn.h>

#include <cstring>
#include <map>

#include "cuda_check.h"
#include "p2p.h"

namespace tl {
namespace gpu {

namespace {

// ---- the NVML subset we call (declarations as in nvml.h; no header or link-time dependency) -----------------------
using nvmlReturn_t = int;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;
struct nvmlPciInfo_t {  // nvmlPciInfo_st (v3 layout)
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
};
// nvmlGpuTopologyLevel_t
constexpr int NVML_TOPOLOGY_INTERNAL = 0, NVML_TOPOLOGY_SINGLE = 10, NVML_TOPOLOGY_MULTIPLE = 20,
              NVML_TOPOLOGY_HOSTBRIDGE = 30, NVML_TOPOLOGY_NODE = 40, NVML_TOPOLOGY_SYSTEM = 50;
constexpr int NVML_P2P_CAPS_INDEX_NVLINK = 2;  // nvmlGpuP2PCapsIndex_t
constexpr int NVML_P2P_STATUS_OK = 0;          // nvmlGpuP2PStatus_t
constexpr int NVML_FEATURE_ENABLED = 1;        // nvmlEnableState_t
constexpr unsigned kMaxNvLinks = 18;           // NVML_NVLINK_MAX_LINKS (H100: 18)

struct Nvml {
  void* lib = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*byBusId)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*commonAncestor)(nvmlDevice_t, nvmlDevice_t, int*) = nullptr;
  nvmlReturn_t (*p2pStatus)(nvmlDevice_t, nvmlDevice_t, int, int*) = nullptr;
  nvmlReturn_t (*nvLinkState)(nvmlDevice_t, unsigned, int*) = nullptr;
  nvmlReturn_t (*nvLinkRemotePci)(nvmlDevice_t, unsigned, nvmlPciInfo_t*) = nullptr;
  bool ready = false;

  Nvml() {
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    init = reinterpret_cast<decltype(init)>(dlsym(lib, "nvmlInit_v2"));
    shutdown = reinterpret_cast<decltype(shutdown)>(dlsym(lib, "nvmlShutdown"));
    byBusId = reinterpret_cast<decltype(byBusId)>(dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2"));
    commonAncestor = reinterpret_cast<decltype(commonAncestor)>(dlsym(lib, "nvmlDeviceGetTopologyCommonAncestor"));
    p2pStatus = reinterpret_cast<decltype(p2pStatus)>(dlsym(lib, "nvmlDeviceGetP2PStatus"));
    nvLinkState = reinterpret_cast<decltype(nvLinkState)>(dlsym(lib, "nvmlDeviceGetNvLinkState"));
    nvLinkRemotePci = reinterpret_cast<decltype(nvLinkRemotePci)>(dlsym(lib, "nvmlDeviceGetNvLinkRemotePciInfo_v2"));
    ready = init && shutdown && byBusId && commonAncestor && init() == NVML_SUCCESS;
  }
  ~Nvml() {
    if (ready) shutdown();
    if (lib) dlclose(lib);
  }
};

const char* levelKind(int level) {
  switch (level) {
    case NVML_TOPOLOGY_INTERNAL:
    case NVML_TOPOLOGY_SINGLE: return "PIX";
    case NVML_TOPOLOGY_MULTIPLE: return "PXB";
    case NVML_TOPOLOGY_HOSTBRIDGE: return "PHB";
    case NVML_TOPOLOGY_NODE: return "NODE";
    case NVML_TOPOLOGY_SYSTEM: return "SYS";
    default: return "SYS";
  }
}

int attr(cudaDeviceAttr a, int dev) {
  int v = -1;
  if (cudaDeviceGetAttribute(&v, a, dev) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return v;
}

}  // namespace

Topology topology() {
  Topology t;
  try {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
      cudaGetLastError();
      return t;
    }
    struct Pci { int domain, bus, device; };
    std::vector<Pci> pci(n);
    for (int i = 0; i < n; ++i) {
      GpuInfo g;
      g.index = i;
      cudaDeviceProp p;
      if (cudaGetDeviceProperties(&p, i) == cudaSuccess) {
        g.name = p.name;
        g.memoryBytes = static_cast<int64_t>(p.totalGlobalMem);
      }
      char bus[32] = {0};
      if (cudaDeviceGetPCIBusId(bus, sizeof bus, i) == cudaSuccess) g.pciBusId = bus;
      cudaGetLastError();
      pci[i] = {attr(cudaDevAttrPciDomainId, i), attr(cudaDevAttrPciBusId, i), attr(cudaDevAttrPciDeviceId, i)};
      t.gpus.push_back(std::move(g));
    }
    t.source = "cuda";

    Nvml nvml;
    std::vector<nvmlDevice_t> handles(n, nullptr);
    bool haveNvml = nvml.ready;
    for (int i = 0; haveNvml && i < n; ++i)
      if (nvml.byBusId(t.gpus[i].pciBusId.c_str(), &handles[i]) != NVML_SUCCESS) haveNvml = false;
    if (haveNvml) t.source = "nvml";

    // NVLink lanes per GPU pair: active links whose remote end is the other GPU (direct NVLink). Behind an
    // NVSwitch the remote end is the switch; then a pair that NVML reports NVLink-P2P-capable gets the active lane
    // count of the first GPU, as nvidia-smi topo -m shows.
    std::map<std::pair<int, int>, int> lanes;
    std::vector<int> activeLanes(n, 0);
    if (haveNvml && nvml.nvLinkState) {
      for (int i = 0; i < n; ++i)
        for (unsigned l = 0; l < kMaxNvLinks; ++l) {
          int state = 0;
          if (nvml.nvLinkState(handles[i], l, &state) != NVML_SUCCESS || state != NVML_FEATURE_ENABLED) continue;
          ++activeLanes[i];
          nvmlPciInfo_t remote;
          std::memset(&remote, 0, sizeof remote);
          if (!nvml.nvLinkRemotePci || nvml.nvLinkRemotePci(handles[i], l, &remote) != NVML_SUCCESS) continue;
          for (int j = 0; j < n; ++j)
            if (j != i && static_cast<int>(remote.domain) == pci[j].domain && static_cast<int>(remote.bus) == pci[j].bus &&
                static_cast<int>(remote.device) == pci[j].device)
              ++lanes[{i, j}];
        }
    }

    for (int a = 0; a < n; ++a)
      for (int b = a; b < n; ++b) {
        LinkInfo L;
        L.a = a;
        L.b = b;
        if (a == b) {
          L.kind = "SELF";
          L.p2p = true;
          t.links.push_back(L);
          continue;
        }
        int access = 0, rank = -1, atomics = 0;
        if (cudaDeviceGetP2PAttribute(&access, cudaDevP2PAttrAccessSupported, a, b) != cudaSuccess) access = 0;
        if (access && cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, a, b) != cudaSuccess) rank = -1;
        if (cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, a, b) != cudaSuccess) atomics = 0;
        cudaGetLastError();
        L.perfRank = access ? rank : -1;
        L.atomics = atomics != 0;
        L.p2p = access != 0 && p2pBlockedReason(b, a).empty() && p2pBlockedReason(a, b).empty();
        if (haveNvml) {
          int direct = lanes[{a, b}];
          int nvStatus = -1;
          if (nvml.p2pStatus && nvml.p2pStatus(handles[a], handles[b], NVML_P2P_CAPS_INDEX_NVLINK, &nvStatus) != NVML_SUCCESS)
            nvStatus = -1;
          if (direct > 0 || nvStatus == NVML_P2P_STATUS_OK) {
            L.kind = "NVLINK";
            L.nvlinks = direct > 0 ? direct : activeLanes[a];
          } else {
            int level = -1;
            L.kind = nvml.commonAncestor(handles[a], handles[b], &level) == NVML_SUCCESS ? levelKind(level)
                                                                                          : (access ? "P2P" : "NONE");
          }
        } else {
          L.kind = access ? "P2P" : "NONE";
        }
        t.links.push_back(L);
      }
  } catch (...) {
    // Never throws (the contract of topology()): a failure mid-way leaves what was gathered, marked by source.
    cudaGetLastError();
  }
  return t;
}

}  // namespace gpu
}  // namespace tl
