// The LayerNorm cells' CUDA path (csrc/cuda/layer_norm_per_step.cuh) on the CPU, for
// tests/test_layer_norm_emulated.py: the same time loops, row kernels and ATen GEMM calls,
// on CPU tensors standing in for device memory (emulated_launch.h). Registered as the ops
// torch.ops.fastrnn_layer_norm_emulated.forward/backward (cell: 0 LSTM, 1 GRU, as
// LayerNormKind), taking the real ops' arguments (the c parts None for the GRU) and
// returning their results (the GRU's c parts empty).
#include "emulated_launch.h"

#include <torch/library.h>

#include <vector>

#include "cuda/layer_norm_per_step.cuh"

namespace {

using namespace fastrnn;
using OptTensor = c10::optional<at::Tensor>;

at::Tensor value_or_undefined(const OptTensor& t) { return t.has_value() ? *t : at::Tensor(); }
at::Tensor defined_or_empty(const at::Tensor& t) { return t.defined() ? t : at::empty({0}); }

LayerNormKind kind_of(int64_t cell) {
  TORCH_CHECK(cell == 0 || cell == 1, "cell must be 0 (LSTM) or 1 (GRU)");
  return static_cast<LayerNormKind>(cell);
}

LayerNormTensors norms_of(const at::Tensor& hh_weight, const OptTensor& hh_bias,
                          const OptTensor& c_weight, const OptTensor& c_bias) {
  return {hh_weight.contiguous(), value_or_undefined(hh_bias), value_or_undefined(c_weight),
          value_or_undefined(c_bias)};
}

std::vector<at::Tensor> forward(int64_t cell, const at::Tensor& input_proj,
                                const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                                const at::Tensor& hh_weight, const OptTensor& hh_bias,
                                const OptTensor& c_weight, const OptTensor& c_bias,
                                const at::Tensor& h0, const OptTensor& c0, bool reverse,
                                bool keep_workspace) {
  const LayerNormKind kind = kind_of(cell);
  const PackedSteps steps =
      read_batch_sizes(batch_sizes, h0.size(0), input_proj.size(0), "input_proj");
  ForwardResult r = cuda::layer_norm::with_layer_norm_types(
      kind, input_proj.scalar_type(), [&](auto type_tag, auto cell_tag) {
        return cuda::layer_norm::forward_impl<decltype(type_tag), decltype(cell_tag)>(
            kind, steps, input_proj, weight_hh, norms_of(hh_weight, hh_bias, c_weight, c_bias),
            h0, value_or_undefined(c0), reverse, keep_workspace);
      });
  return {r.output, r.h_n, defined_or_empty(r.c_n), r.workspace};
}

std::vector<at::Tensor> backward(int64_t cell, const at::Tensor& grad_output,
                                 const at::Tensor& grad_h_n, const OptTensor& grad_c_n,
                                 const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                                 const at::Tensor& hh_weight, const OptTensor& hh_bias,
                                 const OptTensor& c_weight, const OptTensor& c_bias,
                                 const at::Tensor& h0, const OptTensor& c0,
                                 const at::Tensor& output, const at::Tensor& workspace,
                                 bool reverse) {
  const LayerNormKind kind = kind_of(cell);
  const PackedSteps steps = read_batch_sizes(batch_sizes, h0.size(0), output.size(0), "output");
  LayerNormBackwardResult r = cuda::layer_norm::with_layer_norm_types(
      kind, output.scalar_type(), [&](auto type_tag, auto cell_tag) {
        return cuda::layer_norm::backward_impl<decltype(type_tag), decltype(cell_tag)>(
            kind, steps, grad_output, grad_h_n, value_or_undefined(grad_c_n), weight_hh,
            norms_of(hh_weight, hh_bias, c_weight, c_bias), h0, value_or_undefined(c0), output,
            workspace, reverse);
      });
  return {r.grad_input_proj, r.grad_weight_hh, r.grad_hh_weight, r.grad_hh_bias,
          defined_or_empty(r.grad_c_weight), defined_or_empty(r.grad_c_bias), r.grad_h0,
          defined_or_empty(r.grad_c0)};
}

int64_t launches() {
  const int64_t n = cuda::emulated_launches;
  cuda::emulated_launches = 0;
  return n;
}

}  // namespace

TORCH_LIBRARY(fastrnn_layer_norm_emulated, m) {
  m.def("launches() -> int", &launches);
  m.def("forward(int cell, Tensor input_proj, Tensor batch_sizes, Tensor weight_hh, "
        "Tensor ln_hh_weight, Tensor? ln_hh_bias, Tensor? ln_c_weight, Tensor? ln_c_bias, "
        "Tensor h0, Tensor? c0, bool reverse, bool keep_workspace) -> Tensor[]");
  m.def("backward(int cell, Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, "
        "Tensor batch_sizes, Tensor weight_hh, Tensor ln_hh_weight, Tensor? ln_hh_bias, "
        "Tensor? ln_c_weight, Tensor? ln_c_bias, Tensor h0, Tensor? c0, Tensor output, "
        "Tensor workspace, bool reverse) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fastrnn_layer_norm_emulated, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
}
