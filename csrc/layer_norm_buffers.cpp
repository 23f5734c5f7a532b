// The buffers of the LayerNorm cells' forward and backward passes, shared by every
// device (csrc/layer_norm.h).
#include <ATen/ATen.h>

#include "layer_norm.h"

namespace fastrnn {

LayerNormForwardBuffers::LayerNormForwardBuffers(LayerNormKind kind, const at::Tensor& input_proj,
                                                 const at::Tensor& h0, const at::Tensor& c0,
                                                 bool keep_workspace_)
    : keep_workspace(keep_workspace_), gx(input_proj.contiguous()) {
  const LayerNormInfo cell = layer_norm_info(kind);
  const int64_t H = h0.size(1), N = input_proj.size(0), batch = h0.size(0);
  const auto options = input_proj.options();
  h = h0.contiguous().clone();
  if (cell.has_cell) c = c0.contiguous().clone();
  output = at::empty({N, H}, options);
  workspace = at::empty({keep_workspace ? N : batch, cell.workspace_width(H)}, options);
  gh = at::empty({batch, cell.gates * H}, options);
}

ForwardResult LayerNormForwardBuffers::result() const {
  return {output, h, c, keep_workspace ? workspace : workspace.new_empty({0, workspace.size(1)})};
}

LayerNormBackwardBuffers::LayerNormBackwardBuffers(
    LayerNormKind kind, const at::Tensor& grad_output_, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& weight_hh_, const at::Tensor& h0_,
    const at::Tensor& c0_, const at::Tensor& output_, const at::Tensor& workspace_)
    : cell(layer_norm_info(kind)),
      output(output_.contiguous()),
      workspace(workspace_.contiguous()),
      grad_output(grad_output_.contiguous()),
      weight_hh(to_compute_dtype(weight_hh_).contiguous()),
      h0(h0_.contiguous()) {
  const int64_t H = weight_hh.size(1), GH = cell.gates * H, N = output.size(0);
  const auto options = output.options();
  c0 = cell.has_cell ? c0_.contiguous() : at::Tensor();
  dh = grad_h_n.contiguous().clone();
  dc = cell.has_cell ? grad_c_n.contiguous().clone() : at::Tensor();
  dgx = at::empty({N, GH}, options);
  // The GRU's n gate takes r * LN_hh(W_hh h)_n: there LN_hh's output gradient differs.
  dpost = cell.has_cell ? dgx : at::empty({N, GH}, options);
  draw = at::empty({N, GH}, options);
  h_prev = at::empty({N, H}, options);
  dy = at::empty({cell.has_cell ? N : 0, H}, options);
  chat = at::empty({cell.has_cell ? N : 0, H}, options);
}

LayerNormBackwardResult LayerNormBackwardBuffers::finish(bool norm_grads) const {
  const int64_t H = weight_hh.size(1), GH = cell.gates * H;
  LayerNormBackwardResult r;
  r.grad_input_proj = dgx;
  r.grad_weight_hh = at::mm(draw.t(), h_prev);
  if (norm_grads) {
    const at::Tensor xhat = workspace.narrow(1, (cell.saved - cell.gates) * H, GH);
    r.grad_hh_weight = (dpost * xhat).sum(0);
    r.grad_hh_bias = dpost.sum(0);
    if (cell.has_cell) {
      r.grad_c_weight = (dy * chat).sum(0);
      r.grad_c_bias = dy.sum(0);
    }
  }
  r.grad_h0 = dh;
  r.grad_c0 = dc;
  return r;
}

}  // namespace fastrnn
