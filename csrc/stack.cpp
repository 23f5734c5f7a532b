// rnn_stack: a whole eager module call in C++ (the role of torch's _VF.lstm/gru/rnn_tanh for
// fastrnn's modules): layers and directions of the layer ops (csrc/layer.cpp) over packed data,
// zero initial states when none are given, dropout between layers, and the final states put
// back in the caller's batch order. Its kernel is CompositeImplicitAutograd: the layer ops,
// permute_batch and ATen's ops record their own autograd. In Python the same loop costs
// ~40 us of interpreter time per call (measured at the AG News shape), a tenth of an LSTM's
// inference; fastrnn.functional.rnn_stack stays the path of everything else (compile, trace,
// torch.func, proj_size, zoneout, the LayerNorm cells).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>
#include <utility>
#include <vector>

#include "cells.h"
#include "op_handles.h"
#include "recurrence.h"

namespace fastrnn {

namespace {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

// One layer and direction by its layer op: {output, h_n[, c_n]}.
std::vector<Tensor> run_layer(CellKind kind, const Tensor& input, const Tensor& batch_sizes,
                              const Tensor& weight_ih, const Tensor& bias_ih,
                              const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0,
                              const Tensor& c0, bool reverse) {
  static const std::vector<c10::OperatorHandle> ops = cell_ops("_layer");
  const c10::OperatorHandle& handle = ops[static_cast<int>(kind)];
  if (cell_info(kind).has_cell) {
    return handle
        .typed<std::vector<Tensor>(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                   const Tensor&, const OptTensor&, const Tensor&, const Tensor&,
                                   bool, const OptTensor&)>()
        .call(input, batch_sizes, weight_ih, optional(bias_ih), weight_hh, optional(bias_hh), h0,
              c0, reverse, c10::nullopt);
  }
  return handle
      .typed<std::vector<Tensor>(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                 const Tensor&, const OptTensor&, const Tensor&, bool,
                                 const OptTensor&)>()
      .call(input, batch_sizes, weight_ih, optional(bias_ih), weight_hh, optional(bias_hh), h0,
            reverse, c10::nullopt);
}

// The rows of a PackedSequence's first step (its batch), 0 without steps.
int64_t packed_batch(const Tensor& batch_sizes) {
  check_batch_sizes_tensor(batch_sizes);
  return batch_sizes.numel() == 0 ? 0 : batch_sizes.contiguous().const_data_ptr<int64_t>()[0];
}

Tensor stack_states(const std::vector<Tensor>& states) {
  // One layer and direction: a view (cheaper than stack, and so is its backward).
  return states.size() == 1 ? states[0].unsqueeze(0) : at::stack(states);
}

Tensor to_caller_order(const Tensor& states, const OptTensor& unsorted_indices) {
  if (!unsorted_indices.has_value()) return states;
  static const auto permute = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("fastrnn::permute_batch", "")
                                  .typed<Tensor(const Tensor&, const Tensor&)>();
  return permute.call(states, *unsorted_indices);
}

std::vector<Tensor> rnn_stack(c10::string_view cell, const Tensor& data,
                              const Tensor& batch_sizes, const OptTensor& h0_opt,
                              const OptTensor& c0_opt, const OptTensor& unsorted_indices,
                              at::TensorList weights, bool has_bias, int64_t num_layers,
                              double dropout, bool train, bool bidirectional) {
  const CellKind kind = cell_kind(std::string(cell), "rnn_stack");
  const bool has_cell = cell_info(kind).has_cell;
  const int64_t directions = bidirectional ? 2 : 1;
  const int64_t per_direction = has_bias ? 4 : 2;
  TORCH_CHECK(num_layers >= 1, "fastrnn: rnn_stack: num_layers must be at least 1, got ",
              num_layers);
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == num_layers * directions * per_direction,
              "fastrnn: rnn_stack: weights must hold ", num_layers * directions * per_direction,
              " tensors (weight_ih, weight_hh", has_bias ? ", bias_ih, bias_hh" : "",
              " per layer and direction), got ", weights.size());
  TORCH_CHECK(has_cell == c0_opt.has_value() || !h0_opt.has_value(),
              "fastrnn: rnn_stack: c0 must be given with h0 for lstm, and only for lstm");
  for (const auto& [state, name] : {std::pair{&h0_opt, "h0"}, std::pair{&c0_opt, "c0"}}) {
    TORCH_CHECK(!state->has_value() ||
                    ((*state)->dim() == 3 && (*state)->size(0) == num_layers * directions),
                "fastrnn: rnn_stack: ", name, " must have shape [num_layers * num_directions=",
                num_layers * directions, ", batch, hidden_size], got ",
                state->has_value() ? (*state)->sizes() : at::IntArrayRef());
  }
  const int64_t batch = h0_opt.has_value() ? -1 : packed_batch(batch_sizes);
  // Without given states the layers and directions start from the same zeros, read only (the
  // recurrence ops copy their initial state): one allocation while the hidden size stays.
  Tensor zeros;

  Tensor layer_input = data;
  std::vector<Tensor> h_n, c_n;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    std::vector<Tensor> outputs;
    for (int64_t d = 0; d < directions; ++d) {
      const int64_t index = layer * directions + d;
      const Tensor* w = weights.data() + index * per_direction;
      const Tensor& weight_hh = w[1];
      Tensor h0, c0;
      if (h0_opt.has_value()) {
        h0 = h0_opt->select(0, index);
        if (has_cell) c0 = c0_opt->select(0, index);
      } else {
        if (!zeros.defined() || zeros.size(1) != weight_hh.size(1)) {
          zeros = at::zeros({batch, weight_hh.size(1)}, data.options());
        }
        h0 = zeros;
        if (has_cell) c0 = zeros;
      }
      std::vector<Tensor> results =
          run_layer(kind, layer_input, batch_sizes, w[0], has_bias ? w[2] : Tensor(), weight_hh,
                    has_bias ? w[3] : Tensor(), h0, c0, d == 1);
      outputs.push_back(results[0]);
      h_n.push_back(results[1]);
      if (has_cell) c_n.push_back(results[2]);
    }
    layer_input = directions == 1 ? outputs[0] : at::cat(outputs, 1);
    if (dropout > 0 && train && layer < num_layers - 1) {
      layer_input = at::dropout(layer_input, dropout, true);
    }
  }
  std::vector<Tensor> results{layer_input, to_caller_order(stack_states(h_n), unsorted_indices)};
  if (has_cell) results.push_back(to_caller_order(stack_states(c_n), unsorted_indices));
  return results;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  // data and batch_sizes of a PackedSequence; h0/c0 [layers * directions, batch, hidden_size]
  // in its sorted order (None: zeros); weights in torch.nn's order without projections
  // (weight_ih, weight_hh[, bias_ih, bias_hh] per layer and direction). Returns output, h_n
  // [, c_n], the states in the caller's order when unsorted_indices is given.
  m.def("rnn_stack(str cell, Tensor data, Tensor batch_sizes, Tensor? h0, Tensor? c0, "
        "Tensor? unsorted_indices, Tensor[] weights, bool has_bias, int num_layers, "
        "float dropout, bool train, bool bidirectional) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fastrnn, CompositeImplicitAutograd, m) { m.impl("rnn_stack", &rnn_stack); }

}  // namespace fastrnn
