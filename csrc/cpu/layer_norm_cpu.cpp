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

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

template <typename T>
LayerNormParams<T> params(const LayerNormTensors& norms) {
  return {data_or_null<T>(norms.hh_weight), data_or_null<T>(norms.hh_bias),
          data_or_null<T>(norms.c_weight), data_or_null<T>(norms.c_bias)};
}

template <typename T, typename Cell>
ForwardResult forward_impl(const PackedSteps& steps, const at::Tensor& input_proj,
                           const at::Tensor& weight_hh, const LayerNormTensors& norms,
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                           bool keep_workspace) {
  constexpr int64_t G = Cell::kGates;
  const int64_t H = weight_hh.size(1), GH = G * H, W = Cell::kSaved * H + Cell::kStats;
  const int64_t batch = h0.size(0), N = input_proj.size(0);
  const auto options = input_proj.options();

  const at::Tensor gx_t = input_proj.contiguous();
  at::Tensor h = h0.contiguous().clone();
  at::Tensor c = Cell::kHasCell ? c0.contiguous().clone() : at::Tensor();
  at::Tensor output = at::empty({N, H}, options);
  // Without keep_workspace, a scratch that each step overwrites (as ForwardBuffers).
  at::Tensor workspace = at::empty({keep_workspace ? N : batch, W}, options);
  at::Tensor gh_t = at::empty({batch, GH}, options);
  StepGemm<T> gemm(to_compute_dtype(weight_hh).t().contiguous(), H, GH);

  const LayerNormParams<T> p = params<T>(norms);
  const T* gx = gx_t.const_data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* cp = Cell::kHasCell ? c.data_ptr<T>() : nullptr;
  T* out = output.data_ptr<T>();
  T* ws = workspace.data_ptr<T>();
  T* gh = gh_t.data_ptr<T>();

  auto rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t], ws_off = keep_workspace ? off : 0;
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
  walk_steps(steps, batch, !reverse, gemm.use_blas(), GH * H, step, rows);
  return {output, h, c, keep_workspace ? workspace : workspace.new_empty({0, W})};
}

template <typename T, typename Cell>
LayerNormBackwardResult backward_impl(const PackedSteps& steps, const at::Tensor& grad_output,
                                      const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                                      const at::Tensor& weight_hh, const LayerNormTensors& norms,
                                      const at::Tensor& h0_, const at::Tensor& c0_,
                                      const at::Tensor& output_, const at::Tensor& workspace_,
                                      bool reverse) {
  constexpr int64_t G = Cell::kGates;
  const int64_t H = weight_hh.size(1), GH = G * H, W = Cell::kSaved * H + Cell::kStats;
  const int64_t batch = h0_.size(0), N = output_.size(0), T_ = steps.steps();
  const auto options = output_.options();

  const at::Tensor output = output_.contiguous(), workspace = workspace_.contiguous();
  const at::Tensor gout_t = grad_output.contiguous(), h0 = h0_.contiguous();
  const at::Tensor c0 = Cell::kHasCell ? c0_.contiguous() : at::Tensor();
  at::Tensor dh = grad_h_n.contiguous().clone();
  at::Tensor dc = Cell::kHasCell ? grad_c_n.contiguous().clone() : at::Tensor();
  at::Tensor dgx = at::empty({N, GH}, options);
  // dL/d(LN_hh's output): the gates' gradient itself unless GRU (whose n gate takes r * it).
  at::Tensor dpost = Cell::kSeparateHiddenGrad ? at::empty({N, GH}, options) : dgx;
  at::Tensor draw = at::empty({N, GH}, options);  // dL/d(W_hh h)
  at::Tensor h_prev = at::empty({N, H}, options);
  // LN_c's output gradient and normalised input per token (LSTM), for its parameters.
  at::Tensor dy = at::empty({Cell::kHasCell ? N : 0, H}, options);
  at::Tensor chat = at::empty({Cell::kHasCell ? N : 0, H}, options);
  const at::Tensor w = to_compute_dtype(weight_hh).contiguous();
  StepGemm<T> gemm(w, GH, H);

  const LayerNormParams<T> p = params<T>(norms);
  const T* out = output.const_data_ptr<T>();
  const T* ws = workspace.const_data_ptr<T>();
  const T* gout = gout_t.const_data_ptr<T>();
  const T* c0p = Cell::kHasCell ? c0.const_data_ptr<T>() : nullptr;
  T* dhp = dh.data_ptr<T>();
  T* dcp = Cell::kHasCell ? dc.data_ptr<T>() : nullptr;
  T* dgxp = dgx.data_ptr<T>();
  T* dpostp = dpost.data_ptr<T>();
  T* drawp = draw.data_ptr<T>();
  T* hprevp = h_prev.data_ptr<T>();
  T* dyp = dy.data_ptr<T>();
  T* chatp = chat.data_ptr<T>();

  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t r = 0; r < steps.sizes[t]; ++r) {
      const T* src = previous_row(steps, reverse, t, r, out, H, h0.const_data_ptr<T>(), H);
      std::memcpy(hprevp + (steps.offsets[t] + r) * H, src, H * sizeof(T));
    }
  }

  auto rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t tok = off + r;
      T* dh_r = dhp + r * H;
      for (int64_t j = 0; j < H; ++j) dh_r[j] += gout[tok * H + j];
      const T* c_prev = Cell::kHasCell
          ? previous_row(steps, reverse, t, r, ws + Cell::kCellStateSlot * H, W, c0p, H)
          : nullptr;
      Cell::backward_row(H, p, ws + tok * W, hprevp + tok * H, c_prev, dh_r,
                         dcp ? dcp + r * H : nullptr, dgxp + tok * GH, dpostp + tok * GH,
                         drawp + tok * GH, Cell::kHasCell ? dyp + tok * H : nullptr,
                         Cell::kHasCell ? chatp + tok * H : nullptr);
    }
    if (!gemm.use_blas()) {
      gemm.rows(r0, r1, drawp + off * GH, GH, dhp, H, nullptr, Cell::kSeparateHiddenGrad);
    }
  };
  auto step = [&](int64_t t) {
    const int64_t live = steps.sizes[t];
    for_rows(live, GH * H, [&](int64_t r0, int64_t r1) { rows(t, r0, r1); });
    gemm.blas(live, drawp + steps.offsets[t] * GH, GH, dhp, H, at::Tensor(),
              Cell::kSeparateHiddenGrad);
  };
  walk_steps(steps, batch, reverse, gemm.use_blas(), GH * H, step, rows);

  const at::Tensor xhat = workspace.narrow(1, (Cell::kSaved - G) * H, GH);
  LayerNormBackwardResult result;
  result.grad_input_proj = dgx;
  result.grad_weight_hh = at::mm(draw.t(), h_prev);
  result.grad_hh_weight = (dpost * xhat).sum(0);
  result.grad_hh_bias = dpost.sum(0);
  if (Cell::kHasCell) {
    result.grad_c_weight = (dy * chat).sum(0);
    result.grad_c_bias = dy.sum(0);
  }
  result.grad_h0 = dh;
  result.grad_c0 = dc;
  return result;
}

ForwardResult layer_norm_forward(LayerNormKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const LayerNormTensors& norms, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace) {
  auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    return with_layer_norm_cell<T>(kind, [&](auto cell) {
      return forward_impl<T, decltype(cell)>(steps, input_proj, weight_hh, norms, h0, c0,
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
      return backward_impl<T, decltype(cell)>(steps, grad_output, grad_h_n, grad_c_n,
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
