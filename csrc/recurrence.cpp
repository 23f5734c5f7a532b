// Definitions of what csrc/recurrence.h declares for every device and path: the
// batch_sizes reader and the buffers of a forward and a backward pass.
#include <ATen/ATen.h>

#include "recurrence.h"

namespace fastrnn {

void check_batch_sizes_tensor(const at::Tensor& batch_sizes) {
  TORCH_CHECK(batch_sizes.defined(), "fastrnn: batch_sizes must be a 1-D int64 tensor on the "
              "CPU (as in PackedSequence), got None");
  TORCH_CHECK(batch_sizes.device().is_cpu() && batch_sizes.scalar_type() == at::kLong &&
                  batch_sizes.dim() == 1,
              "fastrnn: batch_sizes must be a 1-D int64 tensor on the CPU (as in PackedSequence), "
              "got ", batch_sizes.dim(), "-D ", batch_sizes.scalar_type(), " on ",
              batch_sizes.device());
}

PackedSteps read_batch_sizes(const at::Tensor& batch_sizes, int64_t batch, int64_t total_tokens,
                             const char* tokens_name) {
  check_batch_sizes_tensor(batch_sizes);
  at::Tensor sizes_tensor = batch_sizes.contiguous();
  const int64_t* sizes = sizes_tensor.const_data_ptr<int64_t>();
  const int64_t steps = sizes_tensor.numel();
  PackedSteps out;
  out.sizes.assign(sizes, sizes + steps);
  out.offsets.resize(steps);
  int64_t total = 0;
  for (int64_t t = 0; t < steps; ++t) {
    TORCH_CHECK(sizes[t] >= 1 && sizes[t] <= batch,
                "fastrnn: batch_sizes[", t, "] = ", sizes[t], " is out of range: every entry must be "
                "in [1, batch] where batch = h0.size(0) = ", batch);
    TORCH_CHECK(t == 0 || sizes[t] <= sizes[t - 1],
                "fastrnn: batch_sizes must be non-increasing, but batch_sizes[", t, "] = ", sizes[t],
                " > batch_sizes[", t - 1, "] = ", sizes[t - 1]);
    out.offsets[t] = total;
    total += sizes[t];
  }
  TORCH_CHECK(steps == 0 || sizes[0] == batch,
              "fastrnn: batch_sizes[0] = ", steps ? sizes[0] : 0,
              " must equal the batch size h0.size(0) = ", batch);
  TORCH_CHECK(total == total_tokens, "fastrnn: batch_sizes sum to ", total,
              " but ", tokens_name, " has ", total_tokens, " rows (one per token)");
  return out;
}

ForwardBuffers::ForwardBuffers(const CellInfo& cell, const at::Tensor& input_proj,
                               const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                               const at::Tensor& c0, bool keep_workspace_, bool fresh_state)
    : keep_workspace(keep_workspace_),
      gx(input_proj.contiguous()),
      bias(bias_hh.has_value() ? bias_hh->contiguous() : at::Tensor()) {
  auto state = [&](const at::Tensor& s) {
    return fresh_state ? at::empty(s.sizes(), s.options()) : s.contiguous().clone();
  };
  h = state(h0);
  if (cell.has_cell) c = state(c0);
  const int64_t H = h0.size(1), N = input_proj.size(0), S = cell.saved;
  output = at::empty({N, H}, input_proj.options());
  // Without keep_workspace a small scratch that stays in cache: a fresh [N, S*H] buffer
  // costs more in page faults than the recurrence itself at large sizes.
  workspace = at::empty({S > 0 ? (keep_workspace ? N : h0.size(0)) : 0, S * H},
                        input_proj.options());
  if (!fresh_state) gh = at::empty({h0.size(0), cell.gates * H}, input_proj.options());
}

ForwardResult ForwardBuffers::result() const {
  return {output, h, c, keep_workspace ? workspace : workspace.new_empty({0, workspace.size(1)})};
}

BackwardBuffers::BackwardBuffers(CellKind kind, const at::Tensor& grad_output_,
                                 const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                                 const at::Tensor& weight_hh_, const at::Tensor& h0_,
                                 const at::Tensor& c0_, const at::Tensor& output_,
                                 const at::Tensor& workspace_, bool fresh_state_grads)
    : output(output_.contiguous()),
      workspace(workspace_.contiguous()),
      grad_output(grad_output_.contiguous()),
      weight_hh(fresh_state_grads ? at::Tensor() : to_compute_dtype(weight_hh_).contiguous()),
      h0(h0_.contiguous()) {
  const CellInfo cell = cell_info(kind);
  const int64_t H = weight_hh_.size(1), GH = cell.gates * H, N = output.size(0);
  c0 = cell.has_cell ? c0_.contiguous() : at::Tensor();
  auto state_grad = [&](const at::Tensor& g) {
    return fresh_state_grads ? at::empty(g.sizes(), g.options()) : g.contiguous().clone();
  };
  dh = state_grad(grad_h_n);
  dc = cell.has_cell ? state_grad(grad_c_n) : at::Tensor();
  dgx = at::empty({N, GH}, output.options());
  dgh = cell.separate_hidden_grad ? at::empty({N, GH}, output.options()) : dgx;
  h_prev = at::empty({N, H}, output.options());
}

BackwardResult BackwardBuffers::finish() const {
  return {dgx, at::mm(dgh.t(), h_prev), dgh.sum(0), dh, dc};
}

}  // namespace fastrnn
