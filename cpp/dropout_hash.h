// The dropout mask hash, shared by the CPU and CUDA dropout kernels (host and device code) so both draw the same mask.
#pragma once
#include <cstdint>

namespace tl {

// ---- dropout mask: a counter-based hash of (seed, step, element index), identical on every backend ----------------
// Must match src/reference/kernels.ts bit for bit. keep(i) ⇔ hash < threshold, threshold = ceil(keepProb·2^32).
#if defined(__CUDACC__)
#define TL_HOST_DEVICE __host__ __device__
#else
#define TL_HOST_DEVICE
#endif

TL_HOST_DEVICE inline uint32_t fmix32(uint32_t h) {  // MurmurHash3's finaliser: a bijection on 32 bits
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct DropoutKey {
  uint32_t k1, k2;
};

// seed and step are integers in [0, 2^53); both 32-bit halves of each enter the key.
TL_HOST_DEVICE inline DropoutKey dropoutKey(uint64_t seed, uint64_t step) {
  uint32_t k = fmix32((uint32_t)seed ^ 0x9e3779b9u);
  k = fmix32(k ^ (uint32_t)(seed >> 32) ^ 0x7f4a7c15u);
  k = fmix32(k ^ (uint32_t)step ^ 0x85ebca6bu);
  k = fmix32(k ^ (uint32_t)(step >> 32) ^ 0xc2b2ae35u);
  return DropoutKey{k, fmix32(k ^ 0x27d4eb2fu)};
}

// Element i (< 2^32): two rounds, so masks of different steps are not shifts of one sequence.
TL_HOST_DEVICE inline uint32_t dropoutHash(DropoutKey key, uint32_t i) { return fmix32(fmix32(i + key.k1) ^ key.k2); }

}  // namespace tl
