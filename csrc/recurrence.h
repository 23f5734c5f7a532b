// Declarations shared by the op glue (ops.cpp), the kernels of every device and path,
// and their common pieces (recurrence.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "cells.h"

namespace torch {
class Library;
}  // namespace torch

namespace fastrnn {

// The time structure of a packed sequence: steps, live rows per step, and the
// offset of each step's first token in the packed layout.
struct PackedSteps {
  std::vector<int64_t> sizes;
  std::vector<int64_t> offsets;
  int64_t steps() const { return static_cast<int64_t>(sizes.size()); }
};

// batch_sizes must be a tensor, 1-D int64 on the CPU (as in PackedSequence).
void check_batch_sizes_tensor(const at::Tensor& batch_sizes);

// Validates batch_sizes (1-D int64 on the CPU, every entry in [1, batch],
// non-increasing, first == batch, summing to total_tokens, the rows of the tensor named
// tokens_name) and returns them.
PackedSteps read_batch_sizes(const at::Tensor& batch_sizes, int64_t batch, int64_t total_tokens,
                             const char* tokens_name);

// The dtype the kernels compute in: float32 for bfloat16/float16, else the dtype itself.
// The workspace is kept in it; outputs and gradients return in the op's dtype.
inline at::ScalarType compute_dtype(at::ScalarType dtype) {
  return (dtype == at::kBFloat16 || dtype == at::kHalf) ? at::kFloat : dtype;
}

inline at::Tensor to_compute_dtype(const at::Tensor& t) {
  const auto dtype = compute_dtype(t.scalar_type());
  return dtype == t.scalar_type() ? t : t.to(dtype);
}

// Calls fn(T(), Cell()) for the compute dtype (float or double) and the cell kind:
// the one place where the runtime dtype becomes a template argument (with_cell,
// cells.h, does the cell).
// `zoneout`: the cell is Zoneout<Cell> (cell_math.h; the op was given a zoneout tensor).
template <typename F>
auto with_types(CellKind kind, bool zoneout, at::ScalarType dtype, const F& fn) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "fastrnn: internal error, the kernels compute in float or double, got ", dtype);
  auto run = [&](auto type_tag) {
    return with_cell<decltype(type_tag)>(kind, zoneout,
                                         [&](auto cell) { return fn(type_tag, cell); });
  };
  return dtype == at::kDouble ? run(double()) : run(float());
}

template <typename F>
auto with_types(CellKind kind, at::ScalarType dtype, const F& fn) {
  return with_types(kind, false, dtype, fn);
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
// `fresh_state` (the persistent CUDA kernels, which read h0/c0 and write h_n/c_n
// themselves): h and c are left uninitialised instead of copies of h0/c0, and gh is left
// undefined.
// The loops pass their cell's traits (cell_info_of<Cell>(): S counts zoneout's slots).
struct ForwardBuffers {
  ForwardBuffers(const CellInfo& cell, const at::Tensor& input_proj,
                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                 const at::Tensor& c0, bool keep_workspace, bool fresh_state = false);
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
// zoneout: undefined, or the keep weights [N, K*H] (contiguous, compute dtype): the
// kernels then run Zoneout<Cell> (cell_math.h), with its wider workspace.
using ForwardFn = ForwardResult(CellKind kind, const PackedSteps& steps,
                                const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                const at::Tensor& c0, bool reverse, bool keep_workspace,
                                const at::Tensor& zoneout);
using BackwardFn = BackwardResult(CellKind kind, const PackedSteps& steps,
                                  const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                  const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                  const at::Tensor& h0, const at::Tensor& c0,
                                  const at::Tensor& output, const at::Tensor& workspace,
                                  bool reverse, const at::Tensor& zoneout);

// Registers <cell>_forward and <cell>_backward of every cell for the dispatch key of `m`
// (TORCH_LIBRARY_IMPL in each device's source) with that device's kernels, behind the
// argument checks and dtype handling every device shares (ops.cpp).
void register_kernels(torch::Library& m, ForwardFn* forward, BackwardFn* backward);

}  // namespace fastrnn
