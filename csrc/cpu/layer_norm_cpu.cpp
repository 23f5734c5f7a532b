// The packed time loop of the LayerNorm cells on the CPU, forward and backward: the
// plain cells' loop (recurrence_cpu.cpp) with a whole-row step (Cell::forward_row /
// backward_row, csrc/cell_math.h) where that loop runs a unit at a time, since each row
// needs its own sums. Threads and GEMMs as there (time_loop.h): outputs do not depend on
// the thread count.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstring>

#include "../cell_math.h"
#include "../layer_norm.h"
#include "time_loop.h"

namespace fastrnn {
namespace cpu {
namespace {

template <typename T, typename Cell>
ForwardResult forward_impl(LayerNormKind kind, const PackedSteps& steps,
                           const at::Tensor& input_proj, const at::Tensor& weight_hh,
                           const LayerNormTensors& norms, const at::Tensor& h0,
                           const at::Tensor& c0, bool reverse, bool keep_workspace) {
  constexpr int64_t G = Cell::kGates;
  const int64_t H = weight_hh.size(1), GH = G * H, W = Cell::kSaved * H + Cell::kStats;

  LayerNormForwardBuffers buf(kind, input_proj, h0, c0, keep_workspace);
  const auto gemm = StepGemm<T>::of_transpose(to_compute_dtype(weight_hh), input_proj.size(0), steps.steps());
  const LayerNormParams<T> p = layer_norm_params<T>(norms);
  const T* gx = buf.gx.const_data_ptr<T>();
  T* hp = buf.h.data_ptr<T>();
  T* cp = Cell::kHasCell ? buf.c.data_ptr<T>() : nullptr;
  T* out = buf.output.data_ptr<T>();
  T* ws = buf.workspace.data_ptr<T>();
  T* gh = buf.gh.data_ptr<T>();

  auto rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t], ws_off = buf.workspace_row(steps, t);
    if (!gemm.use_blas()) gemm.rows(r0, r1, hp, H, gh, GH, nullptr, false);
    for (int64_t r = r0; r < r1; ++r) {
      Cell::forward_row(H, p, gx + (off + r) * GH, gh + r * GH, hp + r * H,
                        cp ? cp + r * H : nullptr, ws + (ws_off + r) * W);
      std::memcpy(out + (off + r) * H, hp + r * H, H * sizeof(T));
    }
  };
  auto step = [&](int64_t t) {
    const int64_t live = steps.sizes[t];
    gemm.blas(live, hp, H, gh, GH, at::Tensor(), false);
    for_rows(live, GH * H, [&](int64_t r0, int64_t r1) { rows(t, r0, r1); });
  };
  walk_steps(steps, h0.size(0), !reverse, gemm.use_blas(), GH * H, step, rows);
  return buf.result();
}

template <typename T, typename Cell>
LayerNormBackwardResult backward_impl(LayerNormKind kind, const PackedSteps& steps,
                                      const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                      const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                      const LayerNormTensors& norms, const at::Tensor& h0,
                                      const at::Tensor& c0, const at::Tensor& output,
                                      const at::Tensor& workspace, bool reverse) {
  constexpr int64_t G = Cell::kGates;
  const int64_t H = weight_hh.size(1), GH = G * H, W = Cell::kSaved * H + Cell::kStats;
  const int64_t T_ = steps.steps();

  LayerNormBackwardBuffers buf(kind, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output,
                               workspace);
  StepGemm<T> gemm(buf.weight_hh, GH, H);
  const LayerNormParams<T> p = layer_norm_params<T>(norms);
  const T* out = buf.output.const_data_ptr<T>();
  const T* ws = buf.workspace.const_data_ptr<T>();
  const T* gout = buf.grad_output.const_data_ptr<T>();
  const T* c0p = Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr;
  T* dhp = buf.dh.data_ptr<T>();
  T* dcp = Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr;
  T* dgx = buf.dgx.data_ptr<T>();
  T* dpost = buf.dpost.data_ptr<T>();
  T* draw = buf.draw.data_ptr<T>();
  T* h_prev = buf.h_prev.data_ptr<T>();
  T* dy = buf.dy.data_ptr<T>();
  T* chat = buf.chat.data_ptr<T>();

  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t r = 0; r < steps.sizes[t]; ++r) {
      const T* src = previous_row(steps, reverse, t, r, out, H, buf.h0.const_data_ptr<T>(), H);
      std::memcpy(h_prev + (steps.offsets[t] + r) * H, src, H * sizeof(T));
    }
  }

  auto rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t tok = off + r;
      T* dh_r = dhp + r * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) dh_r[j] += gout[tok * H + j];
      const T* c_prev = Cell::kHasCell
          ? previous_row(steps, reverse, t, r, ws + Cell::kCellStateSlot * H, W, c0p, H)
          : nullptr;
      Cell::backward_row(H, p, ws + tok * W, h_prev + tok * H, c_prev, dh_r,
                         dcp ? dcp + r * H : nullptr, dgx + tok * GH, dpost + tok * GH,
                         draw + tok * GH, Cell::kHasCell ? dy + tok * H : nullptr,
                         Cell::kHasCell ? chat + tok * H : nullptr);
    }
    if (!gemm.use_blas()) {
      gemm.rows(r0, r1, draw + off * GH, GH, dhp, H, nullptr, Cell::kKeepsHiddenGrad);
    }
  };
  auto step = [&](int64_t t) {
    const int64_t live = steps.sizes[t];
    for_rows(live, GH * H, [&](int64_t r0, int64_t r1) { rows(t, r0, r1); });
    gemm.blas(live, draw + steps.offsets[t] * GH, GH, dhp, H, at::Tensor(),
              Cell::kKeepsHiddenGrad);
  };
  walk_steps(steps, buf.h0.size(0), reverse, gemm.use_blas(), GH * H, step, rows);

  // The norms' parameter gradients: sums over tokens in token order, one pass (ATen's
  // mul-and-sum took two, and its order depends on the thread count).
  LayerNormBackwardResult result = buf.finish(/*norm_grads=*/false);
  const int64_t N = buf.output.size(0);
  auto column_sums = [&](int64_t n, const T* grad, const T* normed, int64_t ld_normed,
                         at::Tensor& grad_gain, at::Tensor& grad_bias) {
    grad_gain = at::zeros({n}, buf.output.options());
    grad_bias = at::zeros({n}, buf.output.options());
    T* gg = grad_gain.data_ptr<T>();
    T* gb = grad_bias.data_ptr<T>();
    for (int64_t tok = 0; tok < N; ++tok) {
      const T* g = grad + tok * n;
      const T* x = normed + tok * ld_normed;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        gg[k] += g[k] * x[k];
        gb[k] += g[k];
      }
    }
  };
  column_sums(GH, dpost, ws + (Cell::kSaved - G) * H, W, result.grad_hh_weight,
              result.grad_hh_bias);
  if (Cell::kHasCell) column_sums(H, dy, chat, H, result.grad_c_weight, result.grad_c_bias);
  return result;
}

ForwardResult layer_norm_forward(LayerNormKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const LayerNormTensors& norms, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace) {
  auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    return with_layer_norm_cell<T>(kind, [&](auto cell) {
      return forward_impl<T, decltype(cell)>(kind, steps, input_proj, weight_hh, norms, h0, c0,
                                             reverse, keep_workspace);
    });
  };
  return input_proj.scalar_type() == at::kDouble ? run(double()) : run(float());
}

LayerNormBackwardResult layer_norm_backward(
    LayerNormKind kind, const PackedSteps& steps, const at::Tensor& grad_output,
    const at::Tensor& grad_h_n, const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
    const LayerNormTensors& norms, const at::Tensor& h0, const at::Tensor& c0,
    const at::Tensor& output, const at::Tensor& workspace, bool reverse) {
  auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    return with_layer_norm_cell<T>(kind, [&](auto cell) {
      return backward_impl<T, decltype(cell)>(kind, steps, grad_output, grad_h_n, grad_c_n,
                                              weight_hh, norms, h0, c0, output, workspace,
                                              reverse);
    });
  };
  return output.scalar_type() == at::kDouble ? run(double()) : run(float());
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  register_layer_norm_kernels(m, &layer_norm_forward, &layer_norm_backward);
}

}  // namespace cpu
}  // namespace fastrnn
