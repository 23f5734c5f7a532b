// per_step::launch (declared in per_step.cuh) with real kernel launches on the current
// stream, for every .cu file that runs per-step kernels (the CPU emulation in
// tests/emulation/ defines its own).
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include "per_step.cuh"

namespace fastrnn {
namespace cuda {

template <typename... Params, typename... Args>
void per_step::launch(void (*kernel)(Params...), unsigned blocks, unsigned threads,
                      Args... args) {
  kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace fastrnn
