// The per-step CUDA path (csrc/cuda/per_step.cuh) on the CPU, for
// tests/test_per_step_emulated.py: the same time loops, pointwise kernels and ATen GEMM
// calls, on CPU tensors standing in for device memory. A kernel launch runs every CUDA
// thread of every block one after another (the pointwise kernels have no
// __syncthreads: each thread owns one (row, unit)). Registered as the ops
// torch.ops.fastrnn_per_step_emulated.forward/backward (cell: a CellKind, csrc/cells.h);
// an LSTM's c0/grad_c_n are ignored by the other cells; a zoneout tensor runs Zoneout<Cell>.
#include "emulated_launch.h"

#include <torch/library.h>

namespace {

using namespace fastrnn;

CellKind cell_kind(int64_t cell) {
  TORCH_CHECK(cell >= 0 && cell < kCellCount, "cell must be a CellKind, 0..", kCellCount - 1);
  return static_cast<CellKind>(cell);
}

at::Tensor defined_or_empty(const at::Tensor& t) { return t.defined() ? t : at::empty({0}); }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    int64_t cell, const at::Tensor& input_proj, const at::Tensor& batch_sizes,
    const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
    const at::Tensor& c0, bool reverse, bool keep_workspace,
    const c10::optional<at::Tensor>& zoneout) {
  const CellKind kind = cell_kind(cell);
  const PackedSteps steps =
      read_batch_sizes(batch_sizes, h0.size(0), input_proj.size(0), "input_proj");
  const at::Tensor zo = zoneout.has_value() ? zoneout->contiguous() : at::Tensor();
  ForwardResult r = with_types(kind, zo.defined(), input_proj.scalar_type(),
                               [&](auto type_tag, auto cell_tag) {
    return cuda::per_step::forward_impl<decltype(type_tag), decltype(cell_tag)>(
        kind, steps, input_proj, weight_hh, bias_hh, h0, c0, reverse, keep_workspace, zo);
  });
  return {r.output, r.h_n, defined_or_empty(r.c_n), r.workspace};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    int64_t cell, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
    const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& output,
    const at::Tensor& workspace, bool reverse, const c10::optional<at::Tensor>& zoneout) {
  const CellKind kind = cell_kind(cell);
  const PackedSteps steps =
      read_batch_sizes(batch_sizes, h0.size(0), output.size(0), "output");
  const at::Tensor zo = zoneout.has_value() ? zoneout->contiguous() : at::Tensor();
  BackwardResult r = with_types(kind, zo.defined(), output.scalar_type(),
                                [&](auto type_tag, auto cell_tag) {
    return cuda::per_step::backward_impl<decltype(type_tag), decltype(cell_tag)>(
        kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output, workspace,
        reverse, zo);
  });
  return {r.grad_input_proj, r.grad_weight_hh, r.grad_bias_hh, r.grad_h0,
          defined_or_empty(r.grad_c0)};
}

int64_t launches() {
  const int64_t n = cuda::emulated_launches;
  cuda::emulated_launches = 0;
  return n;
}

}  // namespace

TORCH_LIBRARY(fastrnn_per_step_emulated, m) {
  m.def("launches() -> int", &launches);
  m.def("forward(int cell, Tensor input_proj, Tensor batch_sizes, Tensor weight_hh, "
        "Tensor? bias_hh, Tensor h0, Tensor c0, bool reverse, bool keep_workspace, "
        "Tensor? zoneout=None) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("backward(int cell, Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, "
        "Tensor batch_sizes, Tensor weight_hh, Tensor h0, Tensor c0, Tensor output, "
        "Tensor workspace, bool reverse, Tensor? zoneout=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastrnn_per_step_emulated, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
}
