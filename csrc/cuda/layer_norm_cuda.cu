// The LayerNorm cells' CUDA kernels (layer_norm_per_step.cuh), registered for the CUDA
// dispatch key.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "launch.cuh"
#include "layer_norm_per_step.cuh"

namespace fastrnn {
namespace cuda {
namespace {

ForwardResult forward(LayerNormKind kind, const PackedSteps& steps, const at::Tensor& input_proj,
                      const at::Tensor& weight_hh, const LayerNormTensors& norms,
                      const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                      bool keep_workspace) {
  c10::cuda::CUDAGuard guard(input_proj.device());
  return layer_norm::with_layer_norm_types(
      kind, input_proj.scalar_type(), [&](auto type_tag, auto cell) {
        return layer_norm::forward_impl<decltype(type_tag), decltype(cell)>(
            kind, steps, input_proj, weight_hh, norms, h0, c0, reverse, keep_workspace);
      });
}

LayerNormBackwardResult backward(LayerNormKind kind, const PackedSteps& steps,
                                 const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                 const LayerNormTensors& norms, const at::Tensor& h0,
                                 const at::Tensor& c0, const at::Tensor& output,
                                 const at::Tensor& workspace, bool reverse) {
  c10::cuda::CUDAGuard guard(output.device());
  return layer_norm::with_layer_norm_types(
      kind, output.scalar_type(), [&](auto type_tag, auto cell) {
        return layer_norm::backward_impl<decltype(type_tag), decltype(cell)>(
            kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, norms, h0, c0, output,
            workspace, reverse);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  register_layer_norm_kernels(m, &forward, &backward);
}

}  // namespace cuda
}  // namespace fastrnn
