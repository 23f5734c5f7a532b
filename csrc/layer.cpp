// The layer ops: one layer in one direction, input projection included, with their autograd
// in C++ (the eager path of fastrnn's modules, docs/ops.md):
//   <cell>_layer(input, batch_sizes, weight_ih, bias_ih?, weight_hh, bias_hh?, h0, [c0,]
//                reverse, zoneout?=None) -> (output, h_n, [c_n])
// is <cell>_forward(input @ weight_ih.T, ..., bias_hh=bias_ih + bias_hh) without its
// workspace (the GRU: addmm(bias_ih, input, weight_ih.T) and bias_hh; input_projection). Its
// autograd node runs the backward op and the projection's backward without Python, and the
// output is never saved for backward, so callers may change it in place (as torch.nn's).
// Double backward (create_graph=True) recomputes the layer in plain ops:
// fastrnn::layer_grads_by_recomputation, implemented in Python (fastrnn/ops.py).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cells.h"
#include "checks.h"
#include "op_handles.h"
#include "recurrence.h"

namespace fastrnn {

namespace {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The recurrence ops (csrc/ops.cpp) through the dispatcher: any device's kernels.
struct Recurrence {
  Tensor output, h_n, c_n, workspace;
};

Recurrence run_forward(CellKind kind, const Tensor& proj, const Tensor& batch_sizes,
                       const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0,
                       const Tensor& c0, bool reverse, bool keep, const Tensor& zoneout) {
  static const std::vector<c10::OperatorHandle> ops = cell_ops("_forward");
  const c10::OperatorHandle& handle = ops[static_cast<int>(kind)];
  if (cell_info(kind).has_cell) {
    auto [out, h, c, ws] =
        handle.typed<std::tuple<Tensor, Tensor, Tensor, Tensor>(
            const Tensor&, const Tensor&, const Tensor&, const OptTensor&, const Tensor&,
            const Tensor&, bool, bool, const OptTensor&)>()
            .call(proj, batch_sizes, weight_hh, optional(bias_hh), h0, c0, reverse, keep,
                  optional(zoneout));
    return {out, h, c, ws};
  }
  auto [out, h, ws] = handle.typed<std::tuple<Tensor, Tensor, Tensor>(
                                const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                const Tensor&, bool, bool, const OptTensor&)>()
                          .call(proj, batch_sizes, weight_hh, optional(bias_hh), h0, reverse,
                                keep, optional(zoneout));
  return {out, h, Tensor(), ws};
}

struct RecurrenceGrads {
  Tensor input_proj, weight_hh, bias_hh, h0, c0;
};

RecurrenceGrads run_backward(CellKind kind, const Tensor& grad_output, const Tensor& grad_h_n,
                             const Tensor& grad_c_n, const Tensor& batch_sizes,
                             const Tensor& weight_hh, const Tensor& h0, const Tensor& c0,
                             const Tensor& output, const Tensor& workspace, bool reverse,
                             const Tensor& zoneout) {
  static const std::vector<c10::OperatorHandle> ops = cell_ops("_backward");
  const c10::OperatorHandle& handle = ops[static_cast<int>(kind)];
  if (cell_info(kind).has_cell) {
    auto [gi, gw, gb, gh, gc] =
        handle.typed<std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
            const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
            const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, const OptTensor&)>()
            .call(grad_output, grad_h_n, grad_c_n, batch_sizes, weight_hh, h0, c0, output,
                  workspace, reverse, optional(zoneout));
    return {gi, gw, gb, gh, gc};
  }
  auto [gi, gw, gb, gh] =
      handle.typed<std::tuple<Tensor, Tensor, Tensor, Tensor>(
          const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
          const Tensor&, const Tensor&, bool, const OptTensor&)>()
          .call(grad_output, grad_h_n, batch_sizes, weight_hh, h0, output, workspace, reverse,
                optional(zoneout));
  return {gi, gw, gb, gh, Tensor()};
}

// The recurrence's inputs from the layer's: input_proj and the bias it adds per step.
struct Projection {
  Tensor proj, bias_hh;
};

// input [total_tokens, input_size] and weight_ih [G*H, input_size] like weight_hh, and
// batch_sizes against input; the rest is checked by the recurrence op.
// The LSTM and the Elman RNN add bias_ih and bias_hh to the same sums (gates = W_ih x + b_ih +
// W_hh h + b_hh), so the recurrence gets b_ih + b_hh and the projection is a plain mm:
// addmm's copy of bias_ih into its [total_tokens, G*H] result cost ~10 us a call at the
// AG News shape (2 threads), as much as the RNN's product itself. The GRU's n gate takes
// b_hn inside r * (W_hn h + b_hn), so the GRU keeps addmm.
Projection input_projection(CellKind kind, const Tensor& input, const Tensor& batch_sizes,
                            const Tensor& weight_ih, const Tensor& bias_ih,
                            const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0) {
  check_defined({{&input, "input"}, {&batch_sizes, "batch_sizes"}, {&weight_ih, "weight_ih"},
                 {&weight_hh, "weight_hh"}, {&h0, "h0"}});
  const int64_t rows = cell_info(kind).gates * check_weight_hh(kind, weight_hh);
  check_like(input, "input", weight_hh);
  check_like(weight_ih, "weight_ih", weight_hh);
  TORCH_CHECK(input.dim() == 2, "fastrnn: input must have shape [total_tokens, input_size], got ",
              input.sizes());
  check_shape(weight_ih, "weight_ih", {rows, input.size(1)}, "gates * hidden_size, input_size");
  if (h0.dim() == 2) read_batch_sizes(batch_sizes, h0.size(0), input.size(0), "input");
  if (!bias_ih.defined()) return {at::mm(input, weight_ih.t()), bias_hh};
  check_like(bias_ih, "bias_ih", weight_hh);
  check_shape(bias_ih, "bias_ih", {rows}, "gates * hidden_size");
  if (kind == CellKind::GRU) return {at::addmm(bias_ih, input, weight_ih.t()), bias_hh};
  if (!bias_hh.defined()) return {at::mm(input, weight_ih.t()), bias_ih};
  check_like(bias_hh, "bias_hh", weight_hh);
  check_shape(bias_hh, "bias_hh", {rows}, "gates * hidden_size");
  return {at::mm(input, weight_ih.t()), bias_ih + bias_hh};
}

// Indices of the tensors in LayerFunction's saved list and in its inputs.
enum Saved { kInput, kBatchSizes, kWeightIh, kBiasIh, kWeightHh, kBiasHh, kH0, kC0, kZoneout,
             kOutput, kWorkspace };

// The gradients of the layer as a differentiable function of its inputs (create_graph=True):
// `fastrnn::layer_grads_by_recomputation`, whose kernel is Python (reference ops).
std::vector<Tensor> grads_by_recomputation(CellKind kind, bool reverse,
                                           const variable_list& saved,
                                           const variable_list& grads,
                                           const std::vector<bool>& needs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastrnn::layer_grads_by_recomputation", "")
                       .typed<std::vector<Tensor>(c10::string_view, const c10::List<OptTensor>&,
                                                  const c10::List<OptTensor>&, bool,
                                                  at::IntArrayRef)>();
  c10::List<OptTensor> inputs, outer;
  for (int i = 0; i < kZoneout + 1; ++i) inputs.push_back(optional(saved[i]));
  for (const auto& g : grads) outer.push_back(optional(g));
  const std::vector<int64_t> wanted(needs.begin(), needs.end());
  return op.call(cell_name(kind), inputs, outer, reverse, wanted);
}

class LayerFunction : public torch::autograd::Function<LayerFunction> {
 public:
  // The tensors are LayerFunction's inputs in the order of Saved; returns output, h_n[, c_n].
  // Absent tensors are nullopt: not inputs of the node (autograd needs defined ones).
  static variable_list forward(AutogradContext* ctx, int64_t kind_index, bool reverse,
                               const Tensor& input, const Tensor& batch_sizes,
                               const Tensor& weight_ih, const OptTensor& bias_ih_opt,
                               const Tensor& weight_hh, const OptTensor& bias_hh_opt,
                               const Tensor& h0, const OptTensor& c0_opt,
                               const OptTensor& zoneout_opt) {
    const auto kind = static_cast<CellKind>(kind_index);
    const Tensor bias_ih = bias_ih_opt.value_or(Tensor());
    const Tensor bias_hh = bias_hh_opt.value_or(Tensor());
    const Tensor c0 = c0_opt.value_or(Tensor()), zoneout = zoneout_opt.value_or(Tensor());
    // Function::apply turns grad mode off; below the Autograd key the ops also skip their
    // autograd kernels (the recurrence ops' are Python, fastrnn/ops.py).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->set_materialize_grads(false);
    const Projection p =
        input_projection(kind, input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0);
    Recurrence r = run_forward(kind, p.proj, batch_sizes, weight_hh, p.bias_hh, h0, c0, reverse,
                               true, zoneout);
    ctx->saved_data["kind"] = kind_index;
    ctx->saved_data["reverse"] = reverse;
    ctx->save_for_backward({input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0,
                            zoneout, r.output, r.workspace});
    variable_list outputs{r.output.clone(), r.h_n};
    if (r.c_n.defined()) outputs.push_back(r.c_n);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto kind = static_cast<CellKind>(ctx->saved_data["kind"].toInt());
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const variable_list saved = ctx->get_saved_variables();
    // needs_input_grad counts the node's inputs: the defined tensors only.
    std::vector<bool> needs(kZoneout + 1);
    for (int i = 0, edge = 0; i <= kZoneout; ++i) {
      if (!saved[i].defined()) continue;
      needs[i] = i != kBatchSizes && i != kZoneout && ctx->needs_input_grad(edge);
      ++edge;
    }
    // One gradient per forward argument: kind and reverse (none), then the tensors of Saved.
    variable_list result(2 + kZoneout + 1);
    auto grad_of = [&result](int i) -> Tensor& { return result[2 + i]; };
    if (at::GradMode::is_enabled()) {  // create_graph=True: a differentiable backward
      std::vector<Tensor> found = grads_by_recomputation(kind, reverse, saved, grads, needs);
      for (int i = 0; i <= kZoneout; ++i) {
        if (needs[i]) grad_of(i) = found[i];
      }
      return result;
    }
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Tensor& output = saved[kOutput];
    const Tensor& h0 = saved[kH0];
    const Tensor& c0 = saved[kC0];
    auto grad_or_zeros = [](const Tensor& grad, const Tensor& like) {
      return grad.defined() ? grad.contiguous() : at::zeros_like(like);
    };
    RecurrenceGrads g = run_backward(
        kind, grad_or_zeros(grads[0], output), grad_or_zeros(grads[1], h0),
        c0.defined() ? grad_or_zeros(grads[2], c0) : Tensor(), saved[kBatchSizes],
        saved[kWeightHh], h0, c0, output, saved[kWorkspace], reverse, saved[kZoneout]);
    if (needs[kInput]) grad_of(kInput) = g.input_proj.mm(saved[kWeightIh]);
    if (needs[kWeightIh]) grad_of(kWeightIh) = g.input_proj.t().mm(saved[kInput]);
    if (needs[kBiasIh]) {
      // The gates take bias_ih and bias_hh alike except the GRU's n gate (r * (W_hn h + b_hn)).
      grad_of(kBiasIh) = kind == CellKind::GRU ? g.input_proj.sum(0) : g.bias_hh.clone();
    }
    if (needs[kWeightHh]) grad_of(kWeightHh) = g.weight_hh;
    if (needs[kBiasHh]) grad_of(kBiasHh) = g.bias_hh;
    if (needs[kH0]) grad_of(kH0) = g.h0;
    if (needs[kC0]) grad_of(kC0) = g.c0;
    return result;
  }
};

bool any_requires_grad(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

std::vector<Tensor> layer(CellKind kind, const Tensor& input, const Tensor& batch_sizes,
                          const Tensor& weight_ih, const OptTensor& bias_ih,
                          const Tensor& weight_hh, const OptTensor& bias_hh, const Tensor& h0,
                          const Tensor& c0, bool reverse, const OptTensor& zoneout) {
  const Tensor b_ih = bias_ih.value_or(Tensor()), b_hh = bias_hh.value_or(Tensor());
  const Tensor z = zoneout.value_or(Tensor());
  // The layer computes in its inputs' dtype, as the recurrence ops require: autocast, if on,
  // must not lower the projection (fastrnn's modules cast before calling).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  if (at::GradMode::is_enabled() &&
      any_requires_grad({&input, &weight_ih, &b_ih, &weight_hh, &b_hh, &h0, &c0})) {
    return LayerFunction::apply(static_cast<int64_t>(kind), reverse, input, batch_sizes,
                                weight_ih, optional(b_ih), weight_hh, optional(b_hh), h0,
                                optional(c0), optional(z));
  }
  // No backward can follow: no workspace, and the output needs no copy.
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const Projection p =
      input_projection(kind, input, batch_sizes, weight_ih, b_ih, weight_hh, b_hh, h0);
  Recurrence r =
      run_forward(kind, p.proj, batch_sizes, weight_hh, p.bias_hh, h0, c0, reverse, false, z);
  std::vector<Tensor> outputs{r.output, r.h_n};
  if (r.c_n.defined()) outputs.push_back(r.c_n);
  return outputs;
}

std::string layer_schema(const CellInfo& cell) {
  return std::string(cell.name) +
      "_layer(Tensor input, Tensor batch_sizes, Tensor weight_ih, Tensor? bias_ih, "
      "Tensor weight_hh, Tensor? bias_hh, Tensor h0, " + (cell.has_cell ? "Tensor c0, " : "") +
      "bool reverse, Tensor? zoneout=None) -> Tensor[]";
}

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  for (int i = 0; i < kCellCount; ++i) {
    m.def(layer_schema(cell_info(static_cast<CellKind>(i))).c_str());
  }
  // The gradients of a layer op's inputs (input, batch_sizes, weight_ih, bias_ih, weight_hh,
  // bias_hh, h0, c0, zoneout; absent ones None) for the grads of its outputs, where `needs`
  // (0/1 each) says which are wanted (the others come back as empty tensors), differentiable.
  m.def("layer_grads_by_recomputation(str cell, Tensor?[] inputs, Tensor?[] grads, "
        "bool reverse, int[] needs) -> Tensor[]");
}

// The same kernel for Autograd and below it (inference_mode, dispatch modes' redispatch): it
// records a graph only when grad mode is on and an input requires grad.
void register_layer_kernels(torch::Library& m) {
  for (int i = 0; i < kCellCount; ++i) {
    const auto kind = static_cast<CellKind>(i);
    const std::string name = std::string(cell_name(kind)) + "_layer";
    if (cell_info(kind).has_cell) {
      m.impl(name.c_str(), [kind](const Tensor& input, const Tensor& batch_sizes,
                                  const Tensor& weight_ih, const OptTensor& bias_ih,
                                  const Tensor& weight_hh, const OptTensor& bias_hh,
                                  const Tensor& h0, const Tensor& c0, bool reverse,
                                  const OptTensor& zoneout) {
        return layer(kind, input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0,
                     reverse, zoneout);
      });
    } else {
      m.impl(name.c_str(), [kind](const Tensor& input, const Tensor& batch_sizes,
                                  const Tensor& weight_ih, const OptTensor& bias_ih,
                                  const Tensor& weight_hh, const OptTensor& bias_hh,
                                  const Tensor& h0, bool reverse, const OptTensor& zoneout) {
        return layer(kind, input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0,
                     Tensor(), reverse, zoneout);
      });
    }
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) { register_layer_kernels(m); }
TORCH_LIBRARY_IMPL(fastrnn, CompositeExplicitAutograd, m) { register_layer_kernels(m); }

}  // namespace fastrnn
