// The CUDA kernels of the ops, registered for the CUDA dispatch key: the persistent path
// (persistent.h) where it fits, else the per-step path (per_step.cuh), instantiated here
// with real kernel launches.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "launch.cuh"
#include "per_step.cuh"
#include "persistent.h"

namespace fastrnn {
namespace cuda {
namespace {

ForwardResult recurrence_forward(CellKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace,
                                 const at::Tensor& zoneout) {
  c10::cuda::CUDAGuard guard(input_proj.device());
  if (use_persistent(kind, steps, weight_hh.size(1), weight_hh.element_size(),
                     input_proj.element_size(), h0.size(0), zoneout.defined())) {
    return persistent_forward(kind, steps, input_proj, weight_hh, bias_hh, h0, c0, reverse,
                              keep_workspace, zoneout);
  }
  return with_types(kind, zoneout.defined(), input_proj.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return per_step::forward_impl<decltype(type_tag), decltype(cell)>(
        kind, steps, input_proj, weight_hh, bias_hh, h0, c0, reverse, keep_workspace, zoneout);
  });
}

BackwardResult recurrence_backward(CellKind kind, const PackedSteps& steps,
                                   const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                   const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& output, const at::Tensor& workspace,
                                   bool reverse, const at::Tensor& zoneout) {
  c10::cuda::CUDAGuard guard(output.device());
  if (use_persistent(kind, steps, weight_hh.size(1), weight_hh.element_size(),
                     output.element_size(), h0.size(0), zoneout.defined())) {
    return persistent_backward(kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0,
                               output, workspace, reverse, zoneout);
  }
  return with_types(kind, zoneout.defined(), output.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return per_step::backward_impl<decltype(type_tag), decltype(cell)>(
        kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output, workspace,
        reverse, zoneout);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  register_kernels(m, &recurrence_forward, &recurrence_backward);
}

}  // namespace cuda
}  // namespace fastrnn
