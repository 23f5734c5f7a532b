// per_step::launch (csrc/cuda/per_step.cuh) on the CPU: a launch runs every CUDA thread of
// every block one after another (the per-step kernels have no __syncthreads).
#pragma once

#include "cuda_shim.h"

#include <cstdint>

#include "cuda/per_step.cuh"

namespace fastrnn {
namespace cuda {

// Kernel launches since the last call of an emulator's op `launches` (tests count launches
// per time step with it; the GEMMs are counted as ATen calls there).
inline int64_t emulated_launches = 0;

template <typename... Params, typename... Args>
void per_step::launch(void (*kernel)(Params...), unsigned blocks, unsigned threads,
                      Args... args) {
  ++emulated_launches;
  blockDim.x = threads;
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx.x = b;
    for (unsigned t = 0; t < threads; ++t) {
      threadIdx.x = t;
      kernel(args...);
    }
  }
}

}  // namespace cuda
}  // namespace fastrnn
