// The packed time loop on the CPU, forward and backward, for every cell.
//
// Forward, per step t: rows [0, batch_sizes[t]) are live. For each live row,
// gh = bias_hh + h @ W_hh^T (one GEMM), then the cell's pointwise pass adds
// the input projection, updates h (and c) in place and writes the output row
// and the values backward needs. Rows are independent within a step, so a
// row block runs its GEMM and pointwise pass back to back, in cache.
// The state buffers start as h0 (c0); a row that leaves keeps its final state
// (its h_n), and in reverse a row that joins at step t still holds h0.
//
// Backward walks the steps in the opposite order with dh (dc) buffers that
// start as grad_h_n (grad_c_n): the pointwise backward of each live row, then
// dh_prev (+)= dgh @ W_hh (+= for a cell with kKeepsHiddenGrad: GRU, zoneout).
// grad_weight_hh and grad_bias_hh are one GEMM and one reduction over all tokens
// after the loop.
//
// Zoneout (an op given a zoneout tensor) runs the same loops with Zoneout<Cell>
// (csrc/cell_math.h), a type of its own: the plain cells' instantiations are unchanged.
//
// Threads: with the small GEMM (weights up to 256 KiB) each thread owns a block
// of rows for the whole sequence (for_row_blocks), since rows never interact;
// with BLAS (large weights) each step is one multithreaded GEMM and its
// pointwise pass is split over rows. Either way every row is computed by the
// same instructions whatever the thread count, so outputs do not depend on it.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstring>

#include "../cell_math.h"
#include "../recurrence.h"
#include "time_loop.h"

namespace fastrnn {
namespace cpu {
namespace {

template <typename T, typename Cell>
ForwardResult forward_impl(CellKind kind, const PackedSteps& steps, const at::Tensor& input_proj,
                           const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias_hh,
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                           bool keep_workspace, const at::Tensor& zoneout) {
  static_assert(!Cell::kRowReduction, "no CPU loop for a cell with a row reduction yet");
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int64_t H = weight_hh.size(1), GH = G * H;
  const int64_t batch = h0.size(0), T_ = steps.steps();

  ForwardBuffers buf(cell_info_of<Cell>(), input_proj, bias_hh, h0, c0, keep_workspace);
  const auto gemm = StepGemm<T>::of_transpose(to_compute_dtype(weight_hh), input_proj.size(0), steps.steps());

  const T* gx = buf.gx.const_data_ptr<T>();
  const T* bias = buf.bias.defined() ? buf.bias.const_data_ptr<T>() : nullptr;
  T* hp = buf.h.data_ptr<T>();
  T* cp = Cell::kHasCell ? buf.c.data_ptr<T>() : nullptr;
  T* out = buf.output.data_ptr<T>();
  T* saved = buf.workspace.data_ptr<T>();
  T* gh = buf.gh.data_ptr<T>();
  const T* zo = Z > 0 ? zoneout.const_data_ptr<T>() : nullptr;

  // Rows [r0, r1) of step t: GEMM (small path; BLAS ran for the whole step) and pointwise.
  auto step_rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t], ws_off = buf.workspace_row(steps, t);
    if (!gemm.use_blas()) gemm.rows(r0, r1, hp, H, gh, GH, bias, false);
    for (int64_t r = r0; r < r1; ++r) {
      const T* __restrict gx_r = gx + (off + r) * GH;
      const T* __restrict gh_r = gh + r * GH;
      T* __restrict h_r = hp + r * H;
      T* __restrict c_r = cp ? cp + r * H : nullptr;
      T* __restrict saved_r = saved + (ws_off + r) * S * H;
      const T* __restrict zo_r = Z > 0 ? zo + (off + r) * Z * H : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) Cell::forward(j, H, gx_r, gh_r, h_r, c_r, saved_r, zo_r);
      std::memcpy(out + (off + r) * H, h_r, H * sizeof(T));
    }
  };
  if (gemm.use_blas()) {
    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = reverse ? T_ - 1 - s : s;
      const int64_t rows = steps.sizes[t];
      gemm.blas(rows, hp, H, gh, GH, buf.bias, false);
      for_rows(rows, GH * H, [&](int64_t r0, int64_t r1) { step_rows(t, r0, r1); });
    }
  } else {
    for_row_blocks(steps, batch, GH * H, [&](int64_t lo, int64_t hi) {
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = reverse ? T_ - 1 - s : s;
        const int64_t r1 = std::min(hi, steps.sizes[t]);
        if (r1 > lo) step_rows(t, lo, r1);
      }
    });
  }
  return buf.result();
}

template <typename T, typename Cell>
BackwardResult backward_impl(CellKind kind, const PackedSteps& steps,
                             const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_c_n,
                             const at::Tensor& weight_hh, const at::Tensor& h0,
                             const at::Tensor& c0, const at::Tensor& output,
                             const at::Tensor& workspace, bool reverse,
                             const at::Tensor& zoneout) {
  static_assert(!Cell::kRowReduction, "no CPU loop for a cell with a row reduction yet");
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int64_t H = weight_hh.size(1), GH = G * H, T_ = steps.steps();

  BackwardBuffers buf(kind, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output,
                      workspace);
  StepGemm<T> gemm(buf.weight_hh, GH, H);

  const T* out = buf.output.const_data_ptr<T>();
  const T* ws = buf.workspace.const_data_ptr<T>();
  const T* gout = buf.grad_output.const_data_ptr<T>();
  const T* h0p = buf.h0.const_data_ptr<T>();
  const T* c0p = Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr;
  T* dhp = buf.dh.data_ptr<T>();
  T* dcp = Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr;
  T* dgx = buf.dgx.data_ptr<T>();
  T* dgh = buf.dgh.data_ptr<T>();
  T* h_prev = buf.h_prev.data_ptr<T>();
  const T* zo = Z > 0 ? zoneout.const_data_ptr<T>() : nullptr;

  // h_{t-1} of every token, for the GRU backward and for grad_weight_hh.
  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t r = 0; r < steps.sizes[t]; ++r) {
      const T* src = previous_row(steps, reverse, t, r, out, H, h0p, H);
      std::memcpy(h_prev + (steps.offsets[t] + r) * H, src, H * sizeof(T));
    }
  }

  // Rows [r0, r1) of step t: pointwise backward, then (small path) dh_prev (+)= dgh @ W_hh.
  auto step_rows = [&](int64_t t, int64_t r0, int64_t r1) {
    const int64_t off = steps.offsets[t];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t tok = off + r;
      const T* __restrict saved_r = S > 0 ? ws + tok * S * H : out + tok * H;
      const T* __restrict h_prev_r = h_prev + tok * H;
      const T* __restrict c_prev_r =
          Cell::kHasCell
              ? previous_row(steps, reverse, t, r, ws + Cell::kCellStateSlot * H, S * H, c0p, H)
              : nullptr;
      const T* __restrict gout_r = gout + tok * H;
      T* __restrict dh_r = dhp + r * H;
      T* __restrict dc_r = dcp ? dcp + r * H : nullptr;
      T* __restrict dgx_r = dgx + tok * GH;
      T* __restrict dgh_r = dgh + tok * GH;
      const T* __restrict zo_r = Z > 0 ? zo + tok * Z * H : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        dh_r[j] += gout_r[j];
        Cell::backward(j, H, saved_r, h_prev_r, c_prev_r, dh_r, dc_r, dgx_r, dgh_r, zo_r);
      }
    }
    if (!gemm.use_blas()) {
      gemm.rows(r0, r1, dgh + off * GH, GH, dhp, H, nullptr, Cell::kKeepsHiddenGrad);
    }
  };
  if (gemm.use_blas()) {
    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = reverse ? s : T_ - 1 - s;
      const int64_t rows = steps.sizes[t], off = steps.offsets[t];
      for_rows(rows, GH * H, [&](int64_t r0, int64_t r1) { step_rows(t, r0, r1); });
      gemm.blas(rows, dgh + off * GH, GH, dhp, H, at::Tensor(), Cell::kKeepsHiddenGrad);
    }
  } else {
    for_row_blocks(steps, buf.h0.size(0), GH * H, [&](int64_t lo, int64_t hi) {
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = reverse ? s : T_ - 1 - s;
        const int64_t r1 = std::min(hi, steps.sizes[t]);
        if (r1 > lo) step_rows(t, lo, r1);
      }
    });
  }

  return buf.finish();
}

ForwardResult recurrence_forward(CellKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace,
                                 const at::Tensor& zoneout) {
  return with_types(kind, zoneout.defined(), input_proj.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return forward_impl<decltype(type_tag), decltype(cell)>(kind, steps, input_proj, weight_hh,
                                                            bias_hh, h0, c0, reverse,
                                                            keep_workspace, zoneout);
  });
}

BackwardResult recurrence_backward(CellKind kind, const PackedSteps& steps,
                                   const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                   const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& output, const at::Tensor& workspace,
                                   bool reverse, const at::Tensor& zoneout) {
  return with_types(kind, zoneout.defined(), output.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return backward_impl<decltype(type_tag), decltype(cell)>(
        kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output, workspace,
        reverse, zoneout);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  register_kernels(m, &recurrence_forward, &recurrence_backward);
}

}  // namespace cpu
}  // namespace fastrnn
