// One GEMM of a time step on raw memory, through ATen (BLAS on the CPU, cuBLAS on the
// current CUDA stream), shared by the CPU loop and the per-step CUDA path.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fastrnn {

// C[M, N] = (accumulate ? C : bias, or 0) + A[M, K] @ B[K, N], where A and C are raw
// memory of B's dtype and device with row strides lda and ldc.
template <typename T>
void raw_gemm(const at::Tensor& B, int64_t M, const T* A, int64_t lda, T* C, int64_t ldc,
              const at::Tensor& bias, bool accumulate) {
  // target_device: without it from_blob asks the CUDA driver where the pointer lives
  // (cudaPointerGetAttributes), twice per step on a path bound by host overhead.
  auto wrap = [&](const T* p, int64_t cols, int64_t ld) {
    return at::for_blob(const_cast<T*>(p), {M, cols})
        .strides({ld, 1})
        .options(B.options())
        .target_device(B.device())
        .make_tensor();
  };
  at::Tensor a = wrap(A, B.size(0), lda);
  at::Tensor c = wrap(C, B.size(1), ldc);
  if (accumulate) {
    c.addmm_(a, B);
  } else if (bias.defined()) {
    at::addmm_out(c, bias, a, B);
  } else {
    at::mm_out(c, a, B);
  }
}

}  // namespace fastrnn
