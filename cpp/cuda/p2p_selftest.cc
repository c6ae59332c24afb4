// P2P policy (which GPU pairs may use direct peer copies) and the P2P self-test of seed 000.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "cuda_check.h"
#include "p2p.h"

namespace tl {
namespace gpu {

// Note [P2P self-test]: seed 000 lost a training run to a PCIe-switch pair whose peer-to-peer copies silently
// corrupted data. So a pair of distinct GPUs uses direct P2P only after each direction has carried two 8 MB
// patterns (a counter hash and its bitwise complement, so every bit is seen as 0 and 1) intact: the test runs
// lazily when the first communicator over the pair is created, or for many pairs at once through p2pSelfTest
// (which also measures bandwidth and then checks the data again, after the repeated copies). A mismatch, or any
// CUDA error on the P2P path, disables P2P for the pair for the rest of the process: its peer mappings are torn
// down and canConnect sends it to the host-staged transport. Failures are sticky: a pair that corrupted data once
// is not trusted again in this process. The comparison is on the host, word by word, so it trusts no GPU code.

namespace {

using Key = std::pair<int, int>;
Key unordered(int a, int b) { return a < b ? Key{a, b} : Key{b, a}; }

struct P2PState {
  std::mutex mu;
  bool enabled = true;
  std::map<Key, std::string> disabled;  // unordered pair -> why
  std::map<Key, bool> capable;          // unordered pair -> cudaDeviceCanAccessPeer both ways
  std::set<Key> testedOk;               // ordered (src, dst) directions that passed on the P2P path
  std::set<Key> peerEnabled;            // unordered pairs with peer access enabled both ways
  std::mutex testMu;                    // one test at a time (they allocate 8 MB buffers on both GPUs)
  P2PState() {
    const char* v = std::getenv("TOWERLINE_P2P");
    if (v && std::strcmp(v, "0") == 0) enabled = false;
  }
};

P2PState& st() {
  static P2PState* s = new P2PState();  // never destroyed (device threads may outlive static destructors)
  return *s;
}

int deviceCountOrZero() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

uint32_t mix(uint32_t x) {  // murmur3 finaliser
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  x ^= x >> 16;
  return x;
}

// Pattern k (0, 1) for a direction: a hash of the word index, and its complement for k = 1.
void fillPattern(uint32_t* w, size_t words, int src, int dst, int k) {
  const uint32_t seed = 0x9e3779b9u * static_cast<uint32_t>(src * 64 + dst + 1);
  for (size_t i = 0; i < words; ++i) {
    const uint32_t v = mix(static_cast<uint32_t>(i) * 2654435761u ^ seed);
    w[i] = k ? ~v : v;
  }
}

// Every buffer of one test, released on every path.
struct TestBuffers {
  int src, dst;
  void* srcBuf = nullptr;
  void* dstBuf = nullptr;
  void* hostPat = nullptr;
  void* hostBack = nullptr;
  void* stage = nullptr;
  cudaStream_t stream = nullptr;
  TestBuffers(int s, int d) : src(s), dst(d) {}
  ~TestBuffers() {
    int prev = -1;
    cudaGetDevice(&prev);
    if (srcBuf) { cudaSetDevice(src); cudaFree(srcBuf); }
    cudaSetDevice(dst);
    if (stream) { cudaStreamSynchronize(stream); cudaStreamDestroy(stream); }
    if (dstBuf) cudaFree(dstBuf);
    if (hostPat) cudaFreeHost(hostPat);
    if (hostBack) cudaFreeHost(hostBack);
    if (stage) cudaFreeHost(stage);
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
  }
};

constexpr size_t kTestBytes = size_t(8) << 20;

}  // namespace

CudaBackend& cudaBackendOf(Device& d) {
  TL_CHECK(d.backend().kind() == "cuda", d.name() << " is not a CUDA device");
  return static_cast<CudaBackend&>(d.backend());
}

DeviceGuard::DeviceGuard(int index) {
  TL_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != index) TL_CUDA_CHECK(cudaSetDevice(index));
}

DeviceGuard::~DeviceGuard() {
  int cur = -1;
  if (prev_ >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev_) cudaSetDevice(prev_);
}

void setP2PEnabled(bool enabled) {
  std::lock_guard<std::mutex> lk(st().mu);
  st().enabled = enabled;
}

bool p2pEnabled() {
  std::lock_guard<std::mutex> lk(st().mu);
  return st().enabled;
}

bool peerCapable(int a, int b) {
  if (a == b) return true;
  const Key k = unordered(a, b);
  {
    std::lock_guard<std::mutex> lk(st().mu);
    auto it = st().capable.find(k);
    if (it != st().capable.end()) return it->second;
  }
  int ab = 0, ba = 0;
  bool ok = cudaDeviceCanAccessPeer(&ab, a, b) == cudaSuccess && cudaDeviceCanAccessPeer(&ba, b, a) == cudaSuccess;
  cudaGetLastError();
  ok = ok && ab && ba;
  std::lock_guard<std::mutex> lk(st().mu);
  st().capable[k] = ok;
  return ok;
}

std::string pairDisabledReason(int a, int b) {
  std::lock_guard<std::mutex> lk(st().mu);
  auto it = st().disabled.find(unordered(a, b));
  return it == st().disabled.end() ? std::string() : it->second;
}

void enablePeerAccess(int a, int b) {
  if (a == b) return;
  const Key k = unordered(a, b);
  std::lock_guard<std::mutex> lk(st().mu);
  if (st().peerEnabled.count(k)) return;
  for (auto [from, to] : {Key{a, b}, Key{b, a}}) {
    DeviceGuard g(from);
    cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled)
      cudaGetLastError();
    else
      TL_CUDA_CHECK(e);
  }
  st().peerEnabled.insert(k);
}

void disablePair(int a, int b, const std::string& why) {
  const Key k = unordered(a, b);
  std::lock_guard<std::mutex> lk(st().mu);
  st().disabled.emplace(k, why);  // the first reason stays
  st().testedOk.erase(Key{a, b});
  st().testedOk.erase(Key{b, a});
  if (st().peerEnabled.erase(k)) {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaSetDevice(a);
    cudaDeviceDisablePeerAccess(b);
    cudaSetDevice(b);
    cudaDeviceDisablePeerAccess(a);
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
  }
}

std::string p2pBlockedReason(int dst, int src) {
  if (dst == src) return "";
  if (!p2pEnabled()) return "P2P is turned off (TOWERLINE_P2P=0 or setP2PEnabled(false))";
  if (!peerCapable(dst, src))
    return "cuda:" + std::to_string(src) + " and cuda:" + std::to_string(dst) + " cannot access each other's memory (cudaDeviceCanAccessPeer)";
  std::string why = pairDisabledReason(dst, src);
  return why.empty() ? "" : "P2P disabled for this pair: " + why;
}

PairResult testDirection(int src, int dst, bool measure, bool viaP2P);

PairResult testDirection(int src, int dst, bool measure) {
  const bool viaP2P = p2pBlockedReason(dst, src).empty();
  return testDirection(src, dst, measure, viaP2P);
}

PairResult testDirection(int src, int dst, bool measure, bool viaP2P) {
  PairResult r;
  r.src = src;
  r.dst = dst;
  r.p2p = viaP2P;
  const size_t words = kTestBytes / 4;
  const std::string dir = "cuda:" + std::to_string(src) + " -> cuda:" + std::to_string(dst);
  const char* path = viaP2P ? "P2P (cudaMemcpyPeerAsync)" : "host-staged (pinned memory)";
  try {
    TestBuffers b(src, dst);
    {
      DeviceGuard g(src);
      TL_CUDA_CHECK(cudaMalloc(&b.srcBuf, kTestBytes));
    }
    DeviceGuard g(dst);
    TL_CUDA_CHECK(cudaMalloc(&b.dstBuf, kTestBytes));
    TL_CUDA_CHECK(cudaStreamCreateWithFlags(&b.stream, cudaStreamNonBlocking));
    TL_CUDA_CHECK(cudaHostAlloc(&b.hostPat, kTestBytes, cudaHostAllocPortable));
    TL_CUDA_CHECK(cudaHostAlloc(&b.hostBack, kTestBytes, cudaHostAllocPortable));
    if (viaP2P)
      enablePeerAccess(src, dst);
    else
      TL_CUDA_CHECK(cudaHostAlloc(&b.stage, kTestBytes, cudaHostAllocPortable));

    auto copyOnce = [&] {
      if (viaP2P) {
        TL_CUDA_CHECK(cudaMemcpyPeerAsync(b.dstBuf, dst, b.srcBuf, src, kTestBytes, b.stream));
      } else {
        {
          DeviceGuard gs(src);
          TL_CUDA_CHECK(cudaMemcpy(b.stage, b.srcBuf, kTestBytes, cudaMemcpyDeviceToHost));
        }
        TL_CUDA_CHECK(cudaMemcpyAsync(b.dstBuf, b.stage, kTestBytes, cudaMemcpyHostToDevice, b.stream));
      }
    };
    // Compares dst's buffer with the pattern on the host; "" when intact.
    auto verify = [&](const char* when) -> std::string {
      TL_CUDA_CHECK(cudaStreamSynchronize(b.stream));
      TL_CUDA_CHECK(cudaMemcpy(b.hostBack, b.dstBuf, kTestBytes, cudaMemcpyDeviceToHost));
      const auto* want = static_cast<const uint32_t*>(b.hostPat);
      const auto* got = static_cast<const uint32_t*>(b.hostBack);
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < words; ++i)
        if (got[i] != want[i] && bad++ == 0) first = i;
      if (!bad) return "";
      std::ostringstream os;
      os << dir << " over " << path << " " << when << ": " << bad << " of " << words << " words differ; first at byte "
         << first * 4 << ": got 0x" << std::hex << got[first] << ", expected 0x" << want[first];
      return os.str();
    };

    std::string failure;
    for (int k = 0; k < 2 && failure.empty(); ++k) {
      fillPattern(static_cast<uint32_t*>(b.hostPat), words, src, dst, k);
      {
        DeviceGuard gs(src);
        TL_CUDA_CHECK(cudaMemcpy(b.srcBuf, b.hostPat, kTestBytes, cudaMemcpyHostToDevice));
      }
      TL_CUDA_CHECK(cudaMemsetAsync(b.dstBuf, 0xA5, kTestBytes, b.stream));  // stale data cannot pass
      copyOnce();
      failure = verify(k == 0 ? "(pattern 1)" : "(pattern 2, complemented)");
    }
    if (failure.empty() && measure) {
      copyOnce();  // warm-up
      TL_CUDA_CHECK(cudaStreamSynchronize(b.stream));
      const int reps = viaP2P ? 20 : 10;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) copyOnce();
      TL_CUDA_CHECK(cudaStreamSynchronize(b.stream));
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.gbps = sec > 0 ? static_cast<double>(kTestBytes) * reps / sec / 1e9 : 0;
      failure = verify("(after the bandwidth loop)");
    }
    r.ok = failure.empty();
    r.detail = r.ok ? dir + ": 2 patterns x 8 MB intact over " + path : failure;
  } catch (const std::exception& e) {
    r.ok = false;
    r.detail = dir + " over " + path + ": " + e.what();
  }
  if (viaP2P) {
    if (r.ok) {
      std::lock_guard<std::mutex> lk(st().mu);
      st().testedOk.insert(Key{src, dst});
    } else {
      disablePair(src, dst, r.detail);
      r.detail += "; P2P is now disabled for this pair, the host-staged transport carries its traffic";
    }
  }
  return r;
}

bool p2pUsable(int dst, int src) {
  if (dst == src) return true;
  if (!p2pBlockedReason(dst, src).empty()) return false;
  {
    std::lock_guard<std::mutex> lk(st().mu);
    if (st().testedOk.count(Key{src, dst})) return true;
  }
  std::lock_guard<std::mutex> tl(st().testMu);
  {
    std::lock_guard<std::mutex> lk(st().mu);
    if (st().testedOk.count(Key{src, dst})) return true;  // tested while we waited
  }
  if (!p2pBlockedReason(dst, src).empty()) return false;
  return testDirection(src, dst, false, true).ok;
}

std::vector<PairResult> p2pSelfTest(const std::vector<int>& gpuIndices) {
  std::vector<int> idx;
  for (int i : gpuIndices)
    if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
  std::vector<PairResult> out;
  if (idx.empty()) return out;
  const int n = deviceCountOrZero();
  for (int i : idx)
    TL_CHECK(i >= 0 && i < n, "p2pSelfTest: cuda:" << i << " does not exist; this machine has " << n << " CUDA GPU(s)");
  std::lock_guard<std::mutex> tl(st().testMu);
  for (int a : idx)
    for (int b : idx) {
      if (a == b) continue;
      const std::string blocked = p2pBlockedReason(b, a);
      PairResult r = testDirection(a, b, true, blocked.empty());
      if (!blocked.empty()) r.detail += " (not P2P: " + blocked + ")";
      out.push_back(std::move(r));
    }
  return out;
}

}  // namespace gpu
}  // namespace tl
