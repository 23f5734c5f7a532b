// permute_batch(states, indices) = states.index_select(1, indices): the batch order change of
// a PackedSequence's states (torch.nn's permute_hidden), whose backward is a gather too.
// index_select's own backward is an index_add into zeros, which on the CPU costs ~175 us for a
// [1, 16, 32] state (one scatter per row); when `indices` is a permutation (as
// PackedSequence's sorted/unsorted indices are) the gradient is the gather by its inverse.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "index_map.h"

namespace fastrnn {

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The inverse of `indices` if it is a permutation of [0, n) (on the CPU), else nullopt (CUDA
// keeps index_select's backward, an index_add kernel there).
std::optional<std::vector<int64_t>> inverse_of(const Tensor& indices, int64_t n) {
  if (indices.numel() != n) return std::nullopt;
  return inverse_map(indices, n);
}

// `indices` must be a permutation of [0, states.size(1)) on the CPU (permute_batch checks).
class PermuteBatch : public torch::autograd::Function<PermuteBatch> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& states, const Tensor& indices) {
    // Only the indices are kept (as index_select keeps them); the inverse is rebuilt.
    ctx->save_for_backward({indices});
    return states.index_select(1, indices);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor indices = ctx->get_saved_variables()[0];
    const Tensor inverse = at::tensor(*inverse_of(indices, indices.numel()), indices.options());
    // A differentiable gather: double backward goes through index_select's own formula.
    return {grads[0].index_select(1, inverse.to(grads[0].device())), Tensor()};
  }
};

void check_states(const Tensor& states) {
  TORCH_CHECK(states.dim() == 3, "fastrnn: permute_batch: states must have shape [layers * "
              "directions, batch, hidden_size], got ", states.sizes());
}

Tensor permute_batch(const Tensor& states, const Tensor& indices) {
  check_states(states);
  if (at::GradMode::is_enabled() && states.requires_grad() &&
      inverse_of(indices, states.size(1)).has_value()) {
    return PermuteBatch::apply(states, indices);
  }
  return states.index_select(1, indices);  // index_select's autograd, if any
}

// Below autograd (inference_mode, dispatch modes): no graph to record.
Tensor permute_batch_below_autograd(const Tensor& states, const Tensor& indices) {
  check_states(states);
  return states.index_select(1, indices);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("permute_batch(Tensor states, Tensor indices) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) { m.impl("permute_batch", &permute_batch); }
TORCH_LIBRARY_IMPL(fastrnn, CompositeExplicitAutograd, m) {
  m.impl("permute_batch", &permute_batch_below_autograd);
}

}  // namespace fastrnn
