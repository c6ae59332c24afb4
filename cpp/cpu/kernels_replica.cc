// CPU replica-consistency kernel: hash_bits, a 64-bit hash of a tensor's exact bits (Note [Replica hash]).
#include <cstring>

#include "kernels_cpu.h"

namespace tl {
namespace cpuk {

// Note [Replica hash]: h = Σ_i splitmix64((i << 32) | bits(x[i])) mod 2^64. Each element's position and exact
// bits go in, and the sum is order-free, so every backend (and a parallel GPU reduction) gets the same value.
static inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// in: x (N) f32; out: h (2) i32 = low and high 32 bits of the hash
TL_CPU_KERNEL(hash_bits) {
  const int64_t N = c.args<SizeArgs>().N;
  const uint32_t* x = static_cast<const uint32_t*>(c.in[0].data);
  uint64_t h = 0;
  for (int64_t i = 0; i < N; ++i) h += splitmix64((static_cast<uint64_t>(i) << 32) | x[i]);
  const uint32_t parts[2] = {static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
  std::memcpy(c.out[0].data, parts, sizeof parts);
}

}  // namespace cpuk
}  // namespace tl
