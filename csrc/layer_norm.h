// The LayerNorm cells' ops (csrc/layer_norm_ops.cpp: schemas, checks, dtype handling) and
// the kernels each device registers for them (csrc/cpu/layer_norm_cpu.cpp). Their math is
// in csrc/cell_math.h (LayerNormLSTMCell, LayerNormGRUCell). They have ops of their own,
// next to the plain cells' table, because they take the norms' parameters and return their
// gradients.
#pragma once

#include <ATen/core/Tensor.h>

#include "cell_math.h"
#include "recurrence.h"

namespace torch {
class Library;
}  // namespace torch

namespace fastrnn {

enum class LayerNormKind { LSTM, GRU };
constexpr int kLayerNormCellCount = 2;

template <typename T, typename F>
auto with_layer_norm_cell(LayerNormKind kind, const F& fn) {
  return kind == LayerNormKind::LSTM ? fn(LayerNormLSTMCell<T>()) : fn(LayerNormGRUCell<T>());
}

// A cell's traits at run time.
struct LayerNormInfo {
  const char* name;
  int64_t gates, saved, stats;
  bool has_cell;
  // Values per token in the workspace: saved * H + stats.
  int64_t workspace_width(int64_t H) const { return saved * H + stats; }
};

inline LayerNormInfo layer_norm_info(LayerNormKind kind) {
  return with_layer_norm_cell<float>(kind, [](auto cell) {
    using Cell = decltype(cell);
    return LayerNormInfo{Cell::kName, Cell::kGates, Cell::kSaved, Cell::kStats,
                         Cell::kHasCell};
  });
}

// The norms' parameters (checked, contiguous, in the compute dtype; a bias the op did not get
// is zeros); c_weight/c_bias are undefined unless LSTM.
struct LayerNormTensors {
  at::Tensor hh_weight, hh_bias, c_weight, c_bias;
};

// Raw pointers to the norms' parameters for the kernels (null where undefined).
template <typename T>
LayerNormParams<T> layer_norm_params(const LayerNormTensors& norms) {
  auto ptr = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<T>() : nullptr; };
  return {ptr(norms.hh_weight), ptr(norms.hh_bias), ptr(norms.c_weight), ptr(norms.c_bias)};
}

struct LayerNormBackwardResult {
  at::Tensor grad_input_proj, grad_weight_hh, grad_hh_weight, grad_hh_bias, grad_c_weight,
      grad_c_bias, grad_h0, grad_c0;
};

// The tensors of one forward pass, the same for every device (layer_norm_buffers.cpp), as
// ForwardBuffers (recurrence.h): contiguous gx; the running state h (c), copies of h0
// (c0) that end as h_n (c_n); output [N, H]; workspace [N, width], or without
// keep_workspace a scratch [batch, width] each step overwrites; gh [batch, G*H].
struct LayerNormForwardBuffers {
  LayerNormForwardBuffers(LayerNormKind kind, const at::Tensor& input_proj, const at::Tensor& h0,
                          const at::Tensor& c0, bool keep_workspace);
  ForwardResult result() const;
  int64_t workspace_row(const PackedSteps& steps, int64_t t) const {
    return keep_workspace ? steps.offsets[t] : 0;
  }

  bool keep_workspace;
  at::Tensor gx, h, c, output, workspace, gh;
};

// The tensors of one backward pass (layer_norm_buffers.cpp): contiguous inputs; dh (dc),
// grad_h_n (grad_c_n) at first and grad_h0 (grad_c0) after the loop; per token
// dgx = dL/d(input_proj), dpost = dL/d(LN_hh's output) (dgx itself unless GRU),
// draw = dL/d(W_hh h), h_prev = h_{t-1}, and for the LSTM dy = dL/d(LN_c's output) and
// chat = the normalised c_t; weight_hh in the compute dtype.
struct LayerNormBackwardBuffers {
  LayerNormBackwardBuffers(LayerNormKind kind, const at::Tensor& grad_output,
                           const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                           const at::Tensor& weight_hh, const at::Tensor& h0,
                           const at::Tensor& c0, const at::Tensor& output,
                           const at::Tensor& workspace);
  // After the loop: grad_weight_hh (one GEMM) and, with norm_grads, the norms' parameter
  // gradients (ATen sums over tokens; the CPU loop sums them itself).
  LayerNormBackwardResult finish(bool norm_grads = true) const;

  LayerNormInfo cell;
  at::Tensor output, workspace, grad_output, weight_hh, h0, c0;
  at::Tensor dh, dc, dgx, dpost, draw, h_prev, dy, chat;
};

// As ForwardFn/BackwardFn (recurrence.h); the workspace is [tokens, workspace_width(H)].
using LayerNormForwardFn = ForwardResult(LayerNormKind kind, const PackedSteps& steps,
                                         const at::Tensor& input_proj,
                                         const at::Tensor& weight_hh,
                                         const LayerNormTensors& norms, const at::Tensor& h0,
                                         const at::Tensor& c0, bool reverse,
                                         bool keep_workspace);
using LayerNormBackwardFn = LayerNormBackwardResult(
    LayerNormKind kind, const PackedSteps& steps, const at::Tensor& grad_output,
    const at::Tensor& grad_h_n, const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
    const LayerNormTensors& norms, const at::Tensor& h0, const at::Tensor& c0,
    const at::Tensor& output, const at::Tensor& workspace, bool reverse);

void register_layer_norm_kernels(torch::Library& m, LayerNormForwardFn* forward,
                                 LayerNormBackwardFn* backward);

}  // namespace fastrnn
