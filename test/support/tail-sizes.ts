// Sizes around the vector widths of every CPU kernel path (4, 8 and 16 floats; 16 partial sums, Note [Kernel ISA]
// and Note [Sixteen partial sums]): the loops' tails, and sizes with several full vectors and a tail.
// 2500: several of the AVX2 L2 loop's 1024-float chunks and a partial one (cpp/cpu/kernels_sums.cc).
export const TAIL_SIZES = [1, 7, 15, 16, 17, 31, 33, 63, 65, 1000, 2500, 4099];
