// The LayerNorm cells on CUDA (layer_norm_cuda.cu instantiates it), the per-step path of
// csrc/cuda/per_step.cuh: per time step one GEMM on the live rows (ATen, cuBLAS on the
// current stream) and one kernel in which a thread runs a whole live row through the
// cell's row step (Cell::forward_row / backward_row, csrc/cell_math.h: the CPU's very
// math, norms' sums included). A thread per row, not per unit: simple and exact, but the
// kernel uses batch_sizes[t] threads a step; a block-per-row version with shared-memory
// sums is the next step for speed. The parameter gradients are the same ATen reductions
// as on the CPU (LayerNormBackwardBuffers::finish).
//
// Free of CUDA runtime calls, as per_step.cuh, so that tests/emulation/ can run it on the
// CPU: the includer defines per_step::launch().
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "../cell_math.h"
#include "../layer_norm.h"
#include "../raw_gemm.h"
#include "per_step.cuh"

namespace fastrnn {
namespace cuda {
namespace layer_norm {

using per_step::blocks_for;
using per_step::kThreads;
using per_step::PrevRows;

template <typename T, typename Cell>
__global__ void forward_rows(int64_t rows, int64_t H, LayerNormParams<T> p,
                             const T* __restrict__ gx, T* __restrict__ gh, T* __restrict__ h,
                             T* __restrict__ c, T* __restrict__ out, T* __restrict__ saved) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  constexpr int64_t G = Cell::kGates;
  const int64_t W = Cell::kSaved * H + Cell::kStats;
  Cell::forward_row(H, p, gx + r * G * H, gh + r * G * H, h + r * H, c ? c + r * H : nullptr,
                    saved + r * W);
  for (int64_t j = 0; j < H; ++j) out[r * H + j] = h[r * H + j];
}

// Pointers are offset to the step's first token (saved, gout, h_prev, dgx, dpost, draw,
// dy, chat) or row (dh, dc).
template <typename T, typename Cell>
__global__ void backward_rows(int64_t rows, int64_t H, LayerNormParams<T> p,
                              const T* __restrict__ saved, PrevRows<T> h_prev_src,
                              PrevRows<T> c_prev_src, const T* __restrict__ gout,
                              T* __restrict__ h_prev, T* __restrict__ dh, T* __restrict__ dc,
                              T* __restrict__ dgx, T* __restrict__ dpost, T* __restrict__ draw,
                              T* __restrict__ dy, T* __restrict__ chat) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  constexpr int64_t G = Cell::kGates;
  const int64_t W = Cell::kSaved * H + Cell::kStats, GH = G * H;
  const T* hp = h_prev_src.row(r);
  for (int64_t j = 0; j < H; ++j) {
    h_prev[r * H + j] = hp[j];
    dh[r * H + j] += gout[r * H + j];
  }
  Cell::backward_row(H, p, saved + r * W, hp, Cell::kHasCell ? c_prev_src.row(r) : nullptr,
                     dh + r * H, dc ? dc + r * H : nullptr, dgx + r * GH, dpost + r * GH,
                     draw + r * GH, dy ? dy + r * H : nullptr, chat ? chat + r * H : nullptr);
}

template <typename T, typename Cell>
ForwardResult forward_impl(LayerNormKind kind, const PackedSteps& steps,
                           const at::Tensor& input_proj, const at::Tensor& weight_hh,
                           const LayerNormTensors& norms, const at::Tensor& h0,
                           const at::Tensor& c0, bool reverse, bool keep_workspace) {
  constexpr int64_t G = Cell::kGates;
  const int64_t H = weight_hh.size(1), GH = G * H, W = Cell::kSaved * H + Cell::kStats;
  const int64_t T_ = steps.steps();

  LayerNormForwardBuffers buf(kind, input_proj, h0, c0, keep_workspace);
  const at::Tensor w_t = to_compute_dtype(weight_hh).t();  // [H, GH]
  const LayerNormParams<T> p = layer_norm_params<T>(norms);
  T* hp = buf.h.data_ptr<T>();
  T* cp = Cell::kHasCell ? buf.c.data_ptr<T>() : nullptr;
  T* gh = buf.gh.data_ptr<T>();
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = reverse ? T_ - 1 - s : s;
    const int64_t rows = steps.sizes[t], off = steps.offsets[t];
    raw_gemm<T>(w_t, rows, hp, H, gh, GH, at::Tensor(), false);
    per_step::launch(forward_rows<T, Cell>, blocks_for(rows), kThreads, rows, H, p,
                     buf.gx.const_data_ptr<T>() + off * GH, gh, hp, cp,
                     buf.output.data_ptr<T>() + off * H,
                     buf.workspace.data_ptr<T>() + buf.workspace_row(steps, t) * W);
  }
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
  const LayerNormParams<T> p = layer_norm_params<T>(norms);
  const T* out = buf.output.const_data_ptr<T>();
  const T* ws = buf.workspace.const_data_ptr<T>();
  const T* c0p = Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr;
  T* dy = Cell::kHasCell ? buf.dy.data_ptr<T>() : nullptr;
  T* chat = Cell::kHasCell ? buf.chat.data_ptr<T>() : nullptr;
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = reverse ? s : T_ - 1 - s;
    const int64_t rows = steps.sizes[t], off = steps.offsets[t];
    PrevRows<T> h_src =
        per_step::prev_rows(steps, reverse, t, out, H, buf.h0.const_data_ptr<T>(), H);
    PrevRows<T> c_src =
        Cell::kHasCell
            ? per_step::prev_rows(steps, reverse, t, ws + Cell::kCellStateSlot * H, W, c0p, H)
            : PrevRows<T>{nullptr, 0, 0, nullptr, 0};
    per_step::launch(backward_rows<T, Cell>, blocks_for(rows), kThreads, rows, H, p,
                     ws + off * W, h_src, c_src, buf.grad_output.const_data_ptr<T>() + off * H,
                     buf.h_prev.data_ptr<T>() + off * H, buf.dh.data_ptr<T>(),
                     Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr,
                     buf.dgx.data_ptr<T>() + off * GH, buf.dpost.data_ptr<T>() + off * GH,
                     buf.draw.data_ptr<T>() + off * GH, dy ? dy + off * H : nullptr,
                     chat ? chat + off * H : nullptr);
    raw_gemm<T>(buf.weight_hh, rows, buf.draw.data_ptr<T>() + off * GH, GH,
                buf.dh.data_ptr<T>(), H, at::Tensor(), Cell::kKeepsHiddenGrad);
  }
  return buf.finish();
}

// The kernels of both cells in float or double (as the op glue passes them).
template <typename F>
auto with_layer_norm_types(LayerNormKind kind, at::ScalarType dtype, const F& fn) {
  auto run = [&](auto type_tag) {
    return with_layer_norm_cell<decltype(type_tag)>(
        kind, [&](auto cell) { return fn(type_tag, cell); });
  };
  return dtype == at::kDouble ? run(double()) : run(float());
}

}  // namespace layer_norm
}  // namespace cuda
}  // namespace fastrnn
