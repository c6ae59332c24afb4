// CUDA replica-consistency kernel: hash_bits (Note [Replica hash] in cpp/cpu/kernels_replica.cc).
#include "kernels_common.cuh"

namespace tl {
namespace cudak {

__device__ inline unsigned long long splitmix64(unsigned long long z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The sum mod 2^64 is order-free, so atomics give the same bits as the CPU loop.
__global__ void hashBitsKernel(const unsigned* x, int64_t n, unsigned long long* out) {
  unsigned long long acc = 0;
  TL_GRID_STRIDE(i, n) acc += splitmix64((static_cast<unsigned long long>(i) << 32) | x[i]);
  acc = blockReduce(acc, SumOp{}, 0ull);
  if (threadIdx.x == 0) atomicAdd(out, acc);
}

// in: x (N) f32; out: h (2) i32 = low and high 32 bits of the hash
TL_CUDA_KERNEL(hash_bits) {
  const int64_t N = c.args<SizeArgs>().N;
  cudaStream_t s = cudaOf(c).stream();
  auto* out = reinterpret_cast<unsigned long long*>(c.out[0].data);
  TL_CUDA_CHECK(cudaMemsetAsync(out, 0, 8, s));
  if (N > 0) {
    hashBitsKernel<<<gridFor(N), kThreads, 0, s>>>(static_cast<const unsigned*>(c.in[0].data), N, out);
    TL_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace cudak
}  // namespace tl
