// The LayerNorm cells' op schemas, argument checks and dtype handling (the kernels:
// csrc/cpu/layer_norm_cpu.cpp; the math: csrc/cell_math.h). For <cell> in layer_norm_lstm,
// layer_norm_gru; the c parts only for the LSTM:
//   <cell>_forward(input_proj, batch_sizes, weight_hh, ln_hh_weight, ln_hh_bias?,
//                  [ln_c_weight, ln_c_bias?,] h0, [c0,] reverse, keep_workspace=True)
//       -> (output, h_n, [c_n,] workspace)
//   <cell>_backward(grad_output, grad_h_n, [grad_c_n,] batch_sizes, weight_hh, ln_hh_weight,
//                   ln_hh_bias?, [ln_c_weight, ln_c_bias?,] h0, [c0,] output, workspace,
//                   reverse)
//       -> (grad_input_proj, grad_weight_hh, grad_ln_hh_weight, grad_ln_hh_bias,
//           [grad_ln_c_weight, grad_ln_c_bias,] grad_h0, [grad_c0])
// input_proj is the input projection after its own layer norm (fastrnn/layer_norm.py).
// Autograd and fake implementations: fastrnn/layer_norm_ops.py.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "checks.h"
#include "layer_norm.h"

namespace fastrnn {

namespace {

using OptTensor = c10::optional<at::Tensor>;

// Checks the norms' parameters against weight_hh ([G*H, H]) and returns them contiguous in
// the compute dtype.
LayerNormTensors check_norms(const LayerNormInfo& cell, const at::Tensor& weight_hh,
                             const at::Tensor& hh_weight, const OptTensor& hh_bias,
                             const at::Tensor* c_weight, const OptTensor* c_bias) {
  const int64_t H = weight_hh.size(1), GH = cell.gates * H;
  auto take = [&](const at::Tensor& t, const char* name, int64_t n, const char* meaning) {
    check_like(t, name, weight_hh);
    check_shape(t, name, {n}, meaning);
    return to_compute_dtype(t).contiguous();
  };
  check_defined({{&hh_weight, "ln_hh_weight"}});
  LayerNormTensors norms;
  // An absent bias is zeros, so the kernels' loops need no branch.
  auto zeros = [&](int64_t n) { return at::zeros({n}, norms.hh_weight.options()); };
  norms.hh_weight = take(hh_weight, "ln_hh_weight", GH, "gates * hidden_size");
  norms.hh_bias = hh_bias.has_value() ? take(*hh_bias, "ln_hh_bias", GH, "gates * hidden_size")
                                      : zeros(GH);
  if (c_weight) {
    check_defined({{c_weight, "ln_c_weight"}});
    norms.c_weight = take(*c_weight, "ln_c_weight", H, "hidden_size");
    norms.c_bias = c_bias->has_value() ? take(**c_bias, "ln_c_bias", H, "hidden_size")
                                       : zeros(H);
  }
  return norms;
}

int64_t check_weight_hh(const LayerNormInfo& cell, const at::Tensor& weight_hh) {
  check_floating(weight_hh, "weight_hh");
  TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.size(0) == cell.gates * weight_hh.size(1) &&
                  weight_hh.size(1) >= 1,
              "fastrnn: weight_hh of ", cell.name, " must have shape [", cell.gates,
              "*hidden_size, hidden_size] with hidden_size >= 1, got ", weight_hh.sizes());
  return weight_hh.size(1);
}

void check_state(const at::Tensor& t, const char* name, const at::Tensor& weight_hh,
                 int64_t batch) {
  check_like(t, name, weight_hh);
  check_shape(t, name, {batch, weight_hh.size(1)}, "batch, hidden_size");
}

at::Tensor to_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.defined() ? t.to(dtype) : t;
}

ForwardResult forward_op(LayerNormKind kind, LayerNormForwardFn* kernel,
                         const at::Tensor& input_proj, const at::Tensor& batch_sizes,
                         const at::Tensor& weight_hh, const at::Tensor& hh_weight,
                         const OptTensor& hh_bias, const at::Tensor* c_weight,
                         const OptTensor* c_bias, const at::Tensor& h0, const at::Tensor* c0,
                         bool reverse, bool keep_workspace) {
  const LayerNormInfo cell = layer_norm_info(kind);
  check_defined({{&input_proj, "input_proj"}, {&batch_sizes, "batch_sizes"},
                 {&weight_hh, "weight_hh"}, {&h0, "h0"}});
  if (c0) check_defined({{c0, "c0"}});
  const int64_t H = check_weight_hh(cell, weight_hh);
  LayerNormTensors norms = check_norms(cell, weight_hh, hh_weight, hh_bias, c_weight, c_bias);
  check_like(input_proj, "input_proj", weight_hh);
  TORCH_CHECK(input_proj.dim() == 2 && input_proj.size(1) == cell.gates * H,
              "fastrnn: input_proj must have shape [total_tokens, ", cell.gates * H, "] (",
              cell.gates, " gates * hidden_size ", H, "), got ", input_proj.sizes());
  TORCH_CHECK(h0.dim() == 2, "fastrnn: h0 must have shape [batch, hidden_size=", H, "], got ",
              h0.sizes());
  check_state(h0, "h0", weight_hh, h0.size(0));
  if (c0) check_state(*c0, "c0", weight_hh, h0.size(0));
  PackedSteps steps = read_batch_sizes(batch_sizes, h0.size(0), input_proj.size(0), "input_proj");
  ForwardResult r = kernel(kind, steps, to_compute_dtype(input_proj), weight_hh, norms,
                           to_compute_dtype(h0), c0 ? to_compute_dtype(*c0) : at::Tensor(),
                           reverse, keep_workspace);
  const auto dtype = weight_hh.scalar_type();
  return {r.output.to(dtype), r.h_n.to(dtype), to_dtype(r.c_n, dtype), r.workspace};
}

LayerNormBackwardResult backward_op(
    LayerNormKind kind, LayerNormBackwardFn* kernel, const at::Tensor& grad_output,
    const at::Tensor& grad_h_n, const at::Tensor* grad_c_n, const at::Tensor& batch_sizes,
    const at::Tensor& weight_hh, const at::Tensor& hh_weight, const OptTensor& hh_bias,
    const at::Tensor* c_weight, const OptTensor* c_bias, const at::Tensor& h0,
    const at::Tensor* c0, const at::Tensor& output, const at::Tensor& workspace, bool reverse) {
  const LayerNormInfo cell = layer_norm_info(kind);
  check_defined({{&grad_output, "grad_output"}, {&grad_h_n, "grad_h_n"},
                 {&batch_sizes, "batch_sizes"}, {&weight_hh, "weight_hh"}, {&h0, "h0"},
                 {&output, "output"}, {&workspace, "workspace"}});
  if (c0) check_defined({{c0, "c0"}, {grad_c_n, "grad_c_n"}});
  const int64_t H = check_weight_hh(cell, weight_hh);
  LayerNormTensors norms = check_norms(cell, weight_hh, hh_weight, hh_bias, c_weight, c_bias);
  TORCH_CHECK(h0.dim() == 2, "fastrnn: h0 must have shape [batch, hidden_size], got ", h0.sizes());
  const int64_t batch = h0.size(0);
  check_state(h0, "h0", weight_hh, batch);
  check_state(grad_h_n, "grad_h_n", weight_hh, batch);
  if (c0) {
    check_state(*c0, "c0", weight_hh, batch);
    check_state(*grad_c_n, "grad_c_n", weight_hh, batch);
  }
  check_like(output, "output", weight_hh);
  TORCH_CHECK(output.dim() == 2 && output.size(1) == H, "fastrnn: output must have shape "
              "[total_tokens, ", H, "], got ", output.sizes());
  const int64_t N = output.size(0);
  check_like(grad_output, "grad_output", weight_hh);
  check_shape(grad_output, "grad_output", {N, H}, "the shape of output");
  const auto ws_dtype = compute_dtype(weight_hh.scalar_type());
  TORCH_CHECK(workspace.device() == weight_hh.device() && workspace.scalar_type() == ws_dtype,
              "fastrnn: workspace must be a ", ws_dtype, " tensor on ", weight_hh.device(),
              " (as returned by the forward op), got ", workspace.scalar_type(), " on ",
              workspace.device());
  check_shape(workspace, "workspace", {N, cell.workspace_width(H)},
              "as returned by the forward op with keep_workspace=True");
  PackedSteps steps = read_batch_sizes(batch_sizes, batch, N, "output");
  LayerNormBackwardResult r = kernel(
      kind, steps, to_compute_dtype(grad_output), to_compute_dtype(grad_h_n),
      grad_c_n ? to_compute_dtype(*grad_c_n) : at::Tensor(), weight_hh, norms,
      to_compute_dtype(h0), c0 ? to_compute_dtype(*c0) : at::Tensor(),
      to_compute_dtype(output), workspace, reverse);
  const auto dtype = weight_hh.scalar_type();
  return {r.grad_input_proj.to(dtype), r.grad_weight_hh.to(dtype), r.grad_hh_weight.to(dtype),
          r.grad_hh_bias.to(dtype),    to_dtype(r.grad_c_weight, dtype),
          to_dtype(r.grad_c_bias, dtype), r.grad_h0.to(dtype), to_dtype(r.grad_c0, dtype)};
}

std::string forward_schema(const LayerNormInfo& cell) {
  const std::string norms_c = cell.has_cell ? "Tensor ln_c_weight, Tensor? ln_c_bias, " : "";
  const std::string c0 = cell.has_cell ? "Tensor c0, " : "";
  const std::string c_n = cell.has_cell ? "Tensor c_n, " : "";
  return std::string(cell.name) +
         "_forward(Tensor input_proj, Tensor batch_sizes, Tensor weight_hh, "
         "Tensor ln_hh_weight, Tensor? ln_hh_bias, " + norms_c + "Tensor h0, " + c0 +
         "bool reverse, bool keep_workspace=True) -> (Tensor output, Tensor h_n, " + c_n +
         "Tensor workspace)";
}

std::string backward_schema(const LayerNormInfo& cell) {
  const std::string g_c = cell.has_cell ? "Tensor grad_c_n, " : "";
  const std::string norms_c = cell.has_cell ? "Tensor ln_c_weight, Tensor? ln_c_bias, " : "";
  const std::string c0 = cell.has_cell ? "Tensor c0, " : "";
  const std::string g_norms_c =
      cell.has_cell ? "Tensor grad_ln_c_weight, Tensor grad_ln_c_bias, " : "";
  const std::string g_c0 = cell.has_cell ? ", Tensor grad_c0" : "";
  return std::string(cell.name) + "_backward(Tensor grad_output, Tensor grad_h_n, " + g_c +
         "Tensor batch_sizes, Tensor weight_hh, Tensor ln_hh_weight, Tensor? ln_hh_bias, " +
         norms_c + "Tensor h0, " + c0 + "Tensor output, Tensor workspace, bool reverse) -> "
         "(Tensor grad_input_proj, Tensor grad_weight_hh, Tensor grad_ln_hh_weight, "
         "Tensor grad_ln_hh_bias, " + g_norms_c + "Tensor grad_h0" + g_c0 + ")";
}

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors8 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                            at::Tensor, at::Tensor, at::Tensor>;

}  // namespace

void register_layer_norm_kernels(torch::Library& m, LayerNormForwardFn* forward,
                                 LayerNormBackwardFn* backward) {
  constexpr LayerNormKind lstm = LayerNormKind::LSTM, gru = LayerNormKind::GRU;
  m.impl("layer_norm_lstm_forward",
         [forward](const at::Tensor& input_proj, const at::Tensor& batch_sizes,
                   const at::Tensor& weight_hh, const at::Tensor& hh_weight,
                   const OptTensor& hh_bias, const at::Tensor& c_weight, const OptTensor& c_bias,
                   const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                   bool keep_workspace) -> Tensors4 {
           ForwardResult r = forward_op(lstm, forward, input_proj, batch_sizes, weight_hh,
                                        hh_weight, hh_bias, &c_weight, &c_bias, h0, &c0, reverse,
                                        keep_workspace);
           return {r.output, r.h_n, r.c_n, r.workspace};
         });
  m.impl("layer_norm_lstm_backward",
         [backward](const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& batch_sizes,
                    const at::Tensor& weight_hh, const at::Tensor& hh_weight,
                    const OptTensor& hh_bias, const at::Tensor& c_weight, const OptTensor& c_bias,
                    const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& output,
                    const at::Tensor& workspace, bool reverse) -> Tensors8 {
           LayerNormBackwardResult r = backward_op(
               lstm, backward, grad_output, grad_h_n, &grad_c_n, batch_sizes, weight_hh,
               hh_weight, hh_bias, &c_weight, &c_bias, h0, &c0, output, workspace, reverse);
           return {r.grad_input_proj, r.grad_weight_hh, r.grad_hh_weight, r.grad_hh_bias,
                   r.grad_c_weight,   r.grad_c_bias,    r.grad_h0,        r.grad_c0};
         });
  m.impl("layer_norm_gru_forward",
         [forward](const at::Tensor& input_proj, const at::Tensor& batch_sizes,
                   const at::Tensor& weight_hh, const at::Tensor& hh_weight,
                   const OptTensor& hh_bias, const at::Tensor& h0, bool reverse,
                   bool keep_workspace) -> Tensors3 {
           ForwardResult r = forward_op(gru, forward, input_proj, batch_sizes, weight_hh,
                                        hh_weight, hh_bias, nullptr, nullptr, h0, nullptr,
                                        reverse, keep_workspace);
           return {r.output, r.h_n, r.workspace};
         });
  m.impl("layer_norm_gru_backward",
         [backward](const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                    const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                    const at::Tensor& hh_weight, const OptTensor& hh_bias, const at::Tensor& h0,
                    const at::Tensor& output, const at::Tensor& workspace,
                    bool reverse) -> Tensors5 {
           LayerNormBackwardResult r = backward_op(
               gru, backward, grad_output, grad_h_n, nullptr, batch_sizes, weight_hh, hh_weight,
               hh_bias, nullptr, nullptr, h0, nullptr, output, workspace, reverse);
           return {r.grad_input_proj, r.grad_weight_hh, r.grad_hh_weight, r.grad_hh_bias,
                   r.grad_h0};
         });
}

// "name:gates:saved:stats:has_cell" per cell, joined by ';' (fastrnn/layer_norm_ops.py).
std::string layer_norm_cell_table() {
  std::string table;
  for (int i = 0; i < kLayerNormCellCount; ++i) {
    const LayerNormInfo c = layer_norm_info(static_cast<LayerNormKind>(i));
    table += std::string(i ? ";" : "") + c.name + ":" + std::to_string(c.gates) + ":" +
             std::to_string(c.saved) + ":" + std::to_string(c.stats) + ":" +
             (c.has_cell ? "1" : "0");
  }
  return table;
}

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("layer_norm_cell_table() -> str", &layer_norm_cell_table);
  for (int i = 0; i < kLayerNormCellCount; ++i) {
    const LayerNormInfo cell = layer_norm_info(static_cast<LayerNormKind>(i));
    m.def(forward_schema(cell).c_str());
    m.def(backward_schema(cell).c_str());
  }
}

}  // namespace fastrnn
