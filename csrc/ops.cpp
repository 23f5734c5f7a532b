// The fastrnn op schemas, one forward and one backward op per cell of the table
// (csrc/cells.h), the argument checks and the dtype handling every device shares.
// Each device's source registers its kernels (register_kernels, TORCH_LIBRARY_IMPL in
// csrc/cpu/recurrence_cpu.cpp and csrc/cuda/recurrence_cuda.cu).
//
// Each op runs one layer in one direction of a packed sequence (docs/ops.md); c0, c_n,
// grad_c_n and grad_c0 only for a cell with a cell state (LSTM):
//   <cell>_forward(input_proj, batch_sizes, weight_hh, bias_hh?, h0, [c0,] reverse,
//                  keep_workspace=True, zoneout?=None) -> (output, h_n, [c_n,] workspace)
//   (keep_workspace=False: no backward will follow; the workspace comes back empty)
//   <cell>_backward(grad_output, grad_h_n, [grad_c_n,] batch_sizes, weight_hh, h0, [c0,]
//                   output, workspace, reverse, zoneout?=None)
//       -> (grad_input_proj, grad_weight_hh, grad_bias_hh, grad_h0, [grad_c0])
//   zoneout: the keep weights of zoneout per token and unit, [total_tokens, K*hidden_size]
//   (K = 2 with a cell state: the h block, then the c block), or None (no zoneout); the
//   backward op takes the forward's.
// Autograd and fake (meta) implementations are registered in fastrnn/ops.py.
#include <Python.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "checks.h"
#include "recurrence.h"

namespace fastrnn {

namespace {

// zoneout (if given): [tokens, K*H] like weight_hh, K = 2 with a cell state, else 1.
void check_zoneout(CellKind kind, const c10::optional<at::Tensor>& zoneout,
                   const at::Tensor& weight_hh, int64_t tokens, int64_t H) {
  if (!zoneout.has_value()) return;
  check_defined({{&*zoneout, "zoneout"}});
  check_like(*zoneout, "zoneout", weight_hh);
  const int64_t K = cell_info(kind).has_cell ? 2 : 1;
  TORCH_CHECK(zoneout->dim() == 2 && zoneout->size(0) == tokens && zoneout->size(1) == K * H,
              "fastrnn: zoneout must have shape [total_tokens=", tokens, ", ", K * H, "] (",
              K == 2 ? "the h then the c keep weights" : "the h keep weights",
              " of every token: ", K, " * hidden_size ", H, "), got ", zoneout->sizes());
}

// Argument checks of the forward ops; `c0` only for a cell with a cell state. Returns the
// steps.
PackedSteps check_forward_args(CellKind kind, const at::Tensor& input_proj,
                               const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                               const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                               const at::Tensor* c0, const c10::optional<at::Tensor>& zoneout) {
  check_defined({{&input_proj, "input_proj"}, {&batch_sizes, "batch_sizes"},
                 {&weight_hh, "weight_hh"}, {&h0, "h0"}});
  if (c0) check_defined({{c0, "c0"}});
  const int64_t G = cell_info(kind).gates, H = check_weight_hh(kind, weight_hh);
  TORCH_CHECK(h0.dim() == 2, "fastrnn: h0 must have shape [batch, hidden_size=", H, "], got ",
              h0.sizes());
  const int64_t batch = h0.size(0);
  check_like(input_proj, "input_proj", weight_hh);
  TORCH_CHECK(input_proj.dim() == 2 && input_proj.size(1) == G * H,
              "fastrnn: input_proj must have shape [total_tokens, ", G * H, "] (", G,
              " gates * hidden_size ", H, "), got ", input_proj.sizes());
  if (bias_hh.has_value()) {
    check_like(*bias_hh, "bias_hh", weight_hh);
    check_shape(*bias_hh, "bias_hh", {G * H}, "gates * hidden_size");
  }
  check_like(h0, "h0", weight_hh);
  check_shape(h0, "h0", {batch, H}, "batch, hidden_size");
  if (c0) {
    check_like(*c0, "c0", weight_hh);
    check_shape(*c0, "c0", {batch, H}, "the shape of h0: batch, hidden_size");
  }
  check_zoneout(kind, zoneout, weight_hh, input_proj.size(0), H);
  return read_batch_sizes(batch_sizes, batch, input_proj.size(0), "input_proj");
}

// Argument checks of the backward ops (`grad_c_n`, `c0` only with a cell state).
PackedSteps check_backward_args(CellKind kind, const at::Tensor& grad_output,
                                const at::Tensor& grad_h_n, const at::Tensor* grad_c_n,
                                const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                                const at::Tensor& h0, const at::Tensor* c0,
                                const at::Tensor& output, const at::Tensor& workspace,
                                const c10::optional<at::Tensor>& zoneout) {
  check_defined({{&grad_output, "grad_output"}, {&grad_h_n, "grad_h_n"},
                 {&batch_sizes, "batch_sizes"}, {&weight_hh, "weight_hh"}, {&h0, "h0"},
                 {&output, "output"}, {&workspace, "workspace"}});
  if (c0) check_defined({{c0, "c0"}, {grad_c_n, "grad_c_n"}});
  const int64_t H = check_weight_hh(kind, weight_hh);
  TORCH_CHECK(h0.dim() == 2, "fastrnn: h0 must have shape [batch, hidden_size], got ", h0.sizes());
  const int64_t batch = h0.size(0);
  check_like(h0, "h0", weight_hh);
  check_shape(h0, "h0", {batch, H}, "batch, hidden_size");
  check_like(output, "output", weight_hh);
  TORCH_CHECK(output.dim() == 2, "fastrnn: output must have shape [total_tokens, ", H, "], got ",
              output.sizes());
  const int64_t N = output.size(0);
  check_shape(output, "output", {N, H}, "total_tokens, hidden_size");
  check_like(grad_output, "grad_output", weight_hh);
  check_shape(grad_output, "grad_output", {N, H}, "the shape of output");
  check_like(grad_h_n, "grad_h_n", weight_hh);
  check_shape(grad_h_n, "grad_h_n", {batch, H}, "the shape of h0");
  if (c0) {
    check_like(*c0, "c0", weight_hh);
    check_shape(*c0, "c0", {batch, H}, "the shape of h0");
    check_like(*grad_c_n, "grad_c_n", weight_hh);
    check_shape(*grad_c_n, "grad_c_n", {batch, H}, "the shape of h0");
  }
  check_zoneout(kind, zoneout, weight_hh, N, H);
  const int64_t S = cell_info(kind, zoneout.has_value()).saved;
  TORCH_CHECK(workspace.device() == weight_hh.device(), "fastrnn: workspace must be on ",
              weight_hh.device());
  if (S > 0) {
    check_shape(workspace, "workspace", {N, S * H},
                zoneout.has_value() ? "as returned by the forward op with zoneout"
                                    : "as returned by the forward op");
    const auto ws_dtype = compute_dtype(weight_hh.scalar_type());
    TORCH_CHECK(workspace.scalar_type() == ws_dtype, "fastrnn: workspace must have dtype ",
                ws_dtype, " (as returned by the forward op), got ", workspace.scalar_type());
  }
  return read_batch_sizes(batch_sizes, batch, N, "output");
}

// The kernels compute in float for reduced-precision inputs; the workspace
// stays in float, outputs and gradients return in the input dtype.
at::Tensor opt_compute_dtype(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? to_compute_dtype(*t) : at::Tensor();
}

at::Tensor to_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.defined() ? t.to(dtype) : t;
}

// The kernels' zoneout: contiguous in the compute dtype, undefined without.
at::Tensor kernel_zoneout(const c10::optional<at::Tensor>& zoneout) {
  return zoneout.has_value() ? to_compute_dtype(*zoneout).contiguous() : at::Tensor();
}

ForwardResult forward_op(CellKind kind, ForwardFn* kernel, const at::Tensor& input_proj,
                         const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                         const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                         const at::Tensor* c0, bool reverse, bool keep_workspace,
                         const c10::optional<at::Tensor>& zoneout) {
  PackedSteps steps =
      check_forward_args(kind, input_proj, batch_sizes, weight_hh, bias_hh, h0, c0, zoneout);
  at::Tensor bias = opt_compute_dtype(bias_hh);
  ForwardResult r = kernel(
      kind, steps, to_compute_dtype(input_proj), weight_hh,
      bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt, to_compute_dtype(h0),
      c0 ? to_compute_dtype(*c0) : at::Tensor(), reverse, keep_workspace,
      kernel_zoneout(zoneout));
  auto dtype = weight_hh.scalar_type();
  return {r.output.to(dtype), r.h_n.to(dtype), to_dtype(r.c_n, dtype), r.workspace};
}

BackwardResult backward_op(CellKind kind, BackwardFn* kernel, const at::Tensor& grad_output,
                           const at::Tensor& grad_h_n, const at::Tensor* grad_c_n,
                           const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                           const at::Tensor& h0, const at::Tensor* c0, const at::Tensor& output,
                           const at::Tensor& workspace, bool reverse,
                           const c10::optional<at::Tensor>& zoneout) {
  PackedSteps steps = check_backward_args(kind, grad_output, grad_h_n, grad_c_n, batch_sizes,
                                          weight_hh, h0, c0, output, workspace, zoneout);
  BackwardResult r = kernel(
      kind, steps, to_compute_dtype(grad_output), to_compute_dtype(grad_h_n),
      grad_c_n ? to_compute_dtype(*grad_c_n) : at::Tensor(), weight_hh,
      to_compute_dtype(h0), c0 ? to_compute_dtype(*c0) : at::Tensor(), to_compute_dtype(output),
      workspace, reverse, kernel_zoneout(zoneout));
  auto dtype = weight_hh.scalar_type();
  return {r.grad_input_proj.to(dtype), r.grad_weight_hh.to(dtype), r.grad_bias_hh.to(dtype),
          r.grad_h0.to(dtype), to_dtype(r.grad_c0, dtype)};
}

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using OptTensor = c10::optional<at::Tensor>;

// The schemas of a cell's two ops; the `[...]` parts only with a cell state.
std::string forward_schema(const CellInfo& cell) {
  const std::string c = cell.has_cell ? "Tensor c0, " : "";
  const std::string c_n = cell.has_cell ? "Tensor c_n, " : "";
  return std::string(cell.name) +
      "_forward(Tensor input_proj, Tensor batch_sizes, Tensor weight_hh, Tensor? bias_hh, "
      "Tensor h0, " + c + "bool reverse, bool keep_workspace=True, Tensor? zoneout=None) -> "
      "(Tensor output, "
      "Tensor h_n, " + c_n + "Tensor workspace)";
}

std::string backward_schema(const CellInfo& cell) {
  const std::string g_c = cell.has_cell ? "Tensor grad_c_n, " : "";
  const std::string c = cell.has_cell ? "Tensor c0, " : "";
  const std::string g_c0 = cell.has_cell ? ", Tensor grad_c0" : "";
  return std::string(cell.name) + "_backward(Tensor grad_output, Tensor grad_h_n, " + g_c +
      "Tensor batch_sizes, Tensor weight_hh, Tensor h0, " + c + "Tensor output, "
      "Tensor workspace, bool reverse, Tensor? zoneout=None) -> (Tensor grad_input_proj, "
      "Tensor grad_weight_hh, "
      "Tensor grad_bias_hh, Tensor grad_h0" + g_c0 + ")";
}

}  // namespace

void register_kernels(torch::Library& m, ForwardFn* forward, BackwardFn* backward) {
  for (int i = 0; i < kCellCount; ++i) {
    const CellKind kind = static_cast<CellKind>(i);
    const std::string name = cell_name(kind);
    const std::string fwd = name + "_forward", bwd = name + "_backward";
    if (cell_info(kind).has_cell) {
      m.impl(fwd.c_str(), [kind, forward](const at::Tensor& input_proj,
                                         const at::Tensor& batch_sizes,
                                         const at::Tensor& weight_hh, const OptTensor& bias_hh,
                                         const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                                         bool keep_workspace,
                                         const OptTensor& zoneout) -> Tensors4 {
        ForwardResult r = forward_op(kind, forward, input_proj, batch_sizes, weight_hh, bias_hh,
                                     h0, &c0, reverse, keep_workspace, zoneout);
        return {r.output, r.h_n, r.c_n, r.workspace};
      });
      m.impl(bwd.c_str(), [kind, backward](const at::Tensor& grad_output,
                                          const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                                          const at::Tensor& batch_sizes,
                                          const at::Tensor& weight_hh, const at::Tensor& h0,
                                          const at::Tensor& c0, const at::Tensor& output,
                                          const at::Tensor& workspace, bool reverse,
                                          const OptTensor& zoneout) -> Tensors5 {
        BackwardResult r = backward_op(kind, backward, grad_output, grad_h_n, &grad_c_n,
                                       batch_sizes, weight_hh, h0, &c0, output, workspace, reverse,
                                       zoneout);
        return {r.grad_input_proj, r.grad_weight_hh, r.grad_bias_hh, r.grad_h0, r.grad_c0};
      });
    } else {
      m.impl(fwd.c_str(), [kind, forward](const at::Tensor& input_proj,
                                         const at::Tensor& batch_sizes,
                                         const at::Tensor& weight_hh, const OptTensor& bias_hh,
                                         const at::Tensor& h0, bool reverse,
                                         bool keep_workspace,
                                         const OptTensor& zoneout) -> Tensors3 {
        ForwardResult r = forward_op(kind, forward, input_proj, batch_sizes, weight_hh, bias_hh,
                                     h0, nullptr, reverse, keep_workspace, zoneout);
        return {r.output, r.h_n, r.workspace};
      });
      m.impl(bwd.c_str(), [kind, backward](const at::Tensor& grad_output,
                                          const at::Tensor& grad_h_n,
                                          const at::Tensor& batch_sizes,
                                          const at::Tensor& weight_hh, const at::Tensor& h0,
                                          const at::Tensor& output, const at::Tensor& workspace,
                                          bool reverse, const OptTensor& zoneout) -> Tensors4 {
        BackwardResult r = backward_op(kind, backward, grad_output, grad_h_n, nullptr,
                                       batch_sizes, weight_hh, h0, nullptr, output, workspace,
                                       reverse, zoneout);
        return {r.grad_input_proj, r.grad_weight_hh, r.grad_bias_hh, r.grad_h0};
      });
    }
  }
}

TORCH_LIBRARY(fastrnn, m) {
  for (int i = 0; i < kCellCount; ++i) {
    const CellInfo cell = cell_info(static_cast<CellKind>(i));
    m.def(forward_schema(cell).c_str());
    m.def(backward_schema(cell).c_str());
  }
}

}  // namespace fastrnn

// An empty Python module so that `import fastrnn._C` loads the library and
// runs the registrations above (the pattern of pytorch/extension-cpp).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
