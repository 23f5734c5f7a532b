// Just enough of CUDA to run csrc/cuda/persistent_kernels.cuh on the CPU: every CUDA
// thread of a block is a std::thread, __syncthreads is a std::barrier, blocks run one
// after another. Races the hardware would expose are not modelled; the kernels' logic,
// indexing and shared-memory layout are exercised exactly as written.
#pragma once

#include <barrier>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __launch_bounds__(n)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))

struct EmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local EmulatedDim3 threadIdx;
inline EmulatedDim3 blockIdx, blockDim;
inline std::barrier<>* emulated_block_barrier = nullptr;

inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }
