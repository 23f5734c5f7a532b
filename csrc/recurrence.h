// Declarations shared by the op schemas (ops.cpp), the kernels of every device and path,
// and their common pieces (recurrence.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "cell_math.h"

namespace fastrnn {

enum class CellKind { LSTM, GRU, RNN_TANH, RNN_RELU };

// Number of gate blocks (G) of a cell: input_proj and weight_hh have G*H rows/columns.
inline int64_t gate_count(CellKind kind) {
  switch (kind) {
    case CellKind::LSTM: return 4;
    case CellKind::GRU: return 3;
    default: return 1;
  }
}

// Values per hidden unit and token that forward saves for backward.
inline int64_t saved_count(CellKind kind) {
  switch (kind) {
    case CellKind::LSTM: return 5;  // i f g o c
    case CellKind::GRU: return 4;   // r z n (W_hn h + b_hn)
    default: return 0;              // backward reuses the output h
  }
}

const char* cell_name(CellKind kind);

// The time structure of a packed sequence: steps, live rows per step, and the
// offset of each step's first token in the packed layout.
struct PackedSteps {
  std::vector<int64_t> sizes;
  std::vector<int64_t> offsets;
  int64_t steps() const { return static_cast<int64_t>(sizes.size()); }
};

// Validates batch_sizes (1-D int64 on the CPU, every entry in [1, batch],
// non-increasing, first == batch, summing to total_tokens, the rows of the tensor named
// tokens_name) and returns them.
PackedSteps read_batch_sizes(const at::Tensor& batch_sizes, int64_t batch, int64_t total_tokens,
                             const char* tokens_name);

// Argument checks of the forward ops; `c0` only for LSTM. Returns the steps.
PackedSteps check_forward_args(CellKind kind, const at::Tensor& input_proj,
                               const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                               const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                               const at::Tensor* c0);

// Argument checks of the backward ops (`grad_c_n`, `c0` only for LSTM).
PackedSteps check_backward_args(CellKind kind, const at::Tensor& grad_output,
                                const at::Tensor& grad_h_n, const at::Tensor* grad_c_n,
                                const at::Tensor& batch_sizes, const at::Tensor& weight_hh,
                                const at::Tensor& h0, const at::Tensor* c0,
                                const at::Tensor& output, const at::Tensor& workspace);

// The dtype the kernels compute in: float for bfloat16/float16 tensors, else their own.
inline at::Tensor to_compute_dtype(const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  return (dtype == at::kBFloat16 || dtype == at::kHalf) ? t.to(at::kFloat) : t;
}

// Calls fn(T(), Cell()) for the compute dtype (float or double) and the cell kind:
// the one place where the runtime cell kind and dtype become template arguments.
template <typename F>
auto with_types(CellKind kind, at::ScalarType dtype, const F& fn) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "fastrnn: internal error, the kernels compute in float or double, got ", dtype);
  auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    switch (kind) {
      case CellKind::LSTM: return fn(type_tag, LSTMCell<T>());
      case CellKind::GRU: return fn(type_tag, GRUCell<T>());
      case CellKind::RNN_TANH: return fn(type_tag, RNNCell<T, false>());
      default: return fn(type_tag, RNNCell<T, true>());
    }
  };
  return dtype == at::kDouble ? run(double()) : run(float());
}

// Results of one forward pass; c_n is undefined unless LSTM.
struct ForwardResult {
  at::Tensor output, h_n, c_n, workspace;
};

// The tensors of one step-by-step forward pass (CPU and the per-step CUDA path; defined
// in recurrence.cpp): contiguous input_proj (gx) and bias_hh (undefined without bias); the
// running state h (c), which starts as a copy of h0 (c0) and ends as h_n (c_n);
// output [N, H]; workspace [N, S*H], or without keep_workspace (no backward will
// follow) a scratch [batch, S*H] that each step overwrites (workspace_row(t) says
// where a step's rows go) and the result's workspace is empty; gh [batch, G*H], one
// step's W_hh h + b_hh.
struct ForwardBuffers {
  ForwardBuffers(CellKind kind, const at::Tensor& input_proj,
                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                 const at::Tensor& c0, bool keep_workspace);
  ForwardResult result() const;
  // Index of the workspace row of step t's first live row.
  int64_t workspace_row(const PackedSteps& steps, int64_t t) const {
    return keep_workspace ? steps.offsets[t] : 0;
  }

  bool keep_workspace;
  at::Tensor gx, bias, h, c, output, workspace, gh;
};

// Results of one backward pass; grad_c0 is undefined unless LSTM.
struct BackwardResult {
  at::Tensor grad_input_proj, grad_weight_hh, grad_bias_hh, grad_h0, grad_c0;
};

// The tensors of one backward pass, the same for every device and path (defined in
// recurrence.cpp): contiguous inputs; dh (dc), the gradient of the running state, which
// holds grad_h_n (grad_c_n) on entry and grad_h0 (grad_c0) after the time loop;
// per token dgx = dL/d(input_proj) [N, G*H], dgh = dL/d(W_hh h + b_hh) [N, G*H]
// (the same tensor as dgx unless GRU) and h_prev = h_{t-1} [N, H]; weight_hh in the
// compute dtype.
// `fresh_state_grads` (the persistent CUDA kernels, which read grad_h_n/grad_c_n
// themselves): dh and dc are left uninitialised instead of copies of grad_h_n/grad_c_n,
// and weight_hh is left undefined (those kernels read the op's own weight_hh): two or
// three fewer device copies.
struct BackwardBuffers {
  BackwardBuffers(CellKind kind, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                  const at::Tensor& grad_c_n, const at::Tensor& weight_hh, const at::Tensor& h0,
                  const at::Tensor& c0, const at::Tensor& output, const at::Tensor& workspace,
                  bool fresh_state_grads = false);
  // After the time loop: grad_weight_hh = dgh^T @ h_prev and grad_bias_hh = the sum of
  // dgh over tokens, one GEMM and one reduction (no atomics: deterministic).
  BackwardResult finish() const;

  at::Tensor output, workspace, grad_output, weight_hh, h0, c0;
  at::Tensor dh, dc, dgx, dgh, h_prev;
};

// The kernels of one device (or path), forward and backward, over one layer in one
// direction; the tensors are checked and in the compute dtype (float or double), except
// weight_hh, which keeps the op's dtype: the persistent CUDA kernels hold bfloat16/float16
// weights in shared memory as they are (twice the hidden units fit), the other paths
// convert it (to_compute_dtype).
// keep_workspace false: no backward will follow, the workspace returned is empty.
using ForwardFn = ForwardResult(CellKind kind, const PackedSteps& steps,
                                const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                const at::Tensor& c0, bool reverse, bool keep_workspace);
using BackwardFn = BackwardResult(CellKind kind, const PackedSteps& steps,
                                  const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                  const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                  const at::Tensor& h0, const at::Tensor& c0,
                                  const at::Tensor& output, const at::Tensor& workspace,
                                  bool reverse);

namespace cpu {
ForwardFn recurrence_forward;
BackwardFn recurrence_backward;
}  // namespace cpu

#ifdef FASTRNN_WITH_CUDA
namespace cuda {
ForwardFn recurrence_forward;
BackwardFn recurrence_backward;
}  // namespace cuda
#endif
}  // namespace fastrnn
