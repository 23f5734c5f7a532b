// The per-step CUDA path (recurrence_cuda.cu instantiates it): per time step one GEMM
// on the live rows (through ATen: cuBLAS on the current stream) and one fused pointwise
// kernel using the cell math of csrc/cell_math.h, as on the CPU. batch_sizes is a CPU
// tensor, so the host knows every step's live rows and never synchronises inside the
// loop. grad_weight_hh and grad_bias_hh are one GEMM and one reduction after the loop
// (BackwardBuffers::finish; no atomicAdd: deterministic run to run).
//
// A header of its own, free of CUDA runtime calls, so that tests/emulation/ can run these
// very loops and kernels on the CPU: the includer defines launch().
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "../cell_math.h"
#include "../raw_gemm.h"
#include "../recurrence.h"

namespace fastrnn {
namespace cuda {
namespace per_step {

// kernel<<<blocks, threads, 0, current stream>>>(args...) with a launch check; defined by
// the includer (recurrence_cuda.cu, or the CPU emulation in tests/emulation/).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned blocks, unsigned threads, Args... args);

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

// Rows [0, split) of a step's previous state come from the packed buffer
// `packed` (row stride ld), rows [split, rows) from the initial state `init`.
template <typename T>
struct PrevRows {
  const T* packed;
  int64_t ld;
  int64_t split;
  const T* init;
  int64_t ld_init;
  __device__ const T* row(int64_t r) const {
    return r < split ? packed + r * ld : init + r * ld_init;
  }
};

template <typename T>
PrevRows<T> prev_rows(const PackedSteps& steps, bool reverse, int64_t t, const T* packed,
                      int64_t ld, const T* init, int64_t ld_init) {
  const int64_t T_ = steps.steps();
  if (!reverse && t > 0) return {packed + steps.offsets[t - 1] * ld, ld, steps.sizes[t], init, ld_init};
  if (reverse && t + 1 < T_) {
    return {packed + steps.offsets[t + 1] * ld, ld, steps.sizes[t + 1], init, ld_init};
  }
  return {packed, ld, 0, init, ld_init};
}

// One thread per (live row, hidden unit). Pointers are already offset to the step.
// gh holds W_hh h; the thread adds bias_hh (if any) to its own unit of each gate here
// rather than in the GEMM (ATen's addmm would copy the bias into gh first: one more
// kernel launch per step).
template <typename T, typename Cell>
__global__ void forward_pointwise(int64_t rows, int64_t H, const T* __restrict__ gx,
                                  T* __restrict__ gh, const T* __restrict__ bias,
                                  T* __restrict__ h, T* __restrict__ c, T* __restrict__ out,
                                  T* __restrict__ saved, const T* __restrict__ zoneout) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * H) return;
  const int64_t r = idx / H, j = idx % H;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  T* gh_r = gh + r * G * H;
  if (bias) {
#pragma unroll
    for (int64_t g = 0; g < G; ++g) gh_r[g * H + j] += bias[g * H + j];
  }
  Cell::forward(j, H, gx + r * G * H, gh_r, h + r * H, c ? c + r * H : nullptr,
                saved + r * S * H, Z > 0 ? zoneout + r * Z * H : nullptr);
  out[r * H + j] = h[r * H + j];
}

template <typename T, typename Cell>
__global__ void backward_pointwise(int64_t rows, int64_t H, const T* __restrict__ saved_or_out,
                                   PrevRows<T> h_prev_src, PrevRows<T> c_prev_src,
                                   const T* __restrict__ gout, T* __restrict__ h_prev,
                                   T* __restrict__ dh, T* __restrict__ dc, T* __restrict__ dgx,
                                   T* __restrict__ dgh, const T* __restrict__ zoneout) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * H) return;
  const int64_t r = idx / H, j = idx % H;
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const T* hp = h_prev_src.row(r);
  h_prev[r * H + j] = hp[j];
  dh[r * H + j] += gout[r * H + j];
  const T* saved_r = S > 0 ? saved_or_out + r * S * H : saved_or_out + r * H;
  Cell::backward(j, H, saved_r, hp, Cell::kHasCell ? c_prev_src.row(r) : nullptr, dh + r * H,
                 dc ? dc + r * H : nullptr, dgx + r * G * H, dgh + r * G * H,
                 Z > 0 ? zoneout + r * Z * H : nullptr);
}

template <typename T, typename Cell>
ForwardResult forward_impl(CellKind kind, const PackedSteps& steps, const at::Tensor& input_proj,
                           const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias_hh,
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                           bool keep_workspace, const at::Tensor& zoneout) {
  static_assert(!Cell::kRowReduction, "no per-step CUDA loop for a row reduction yet");
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int64_t H = weight_hh.size(1), GH = G * H, T_ = steps.steps();

  ForwardBuffers buf(cell_info_of<Cell>(), input_proj, bias_hh, h0, c0, keep_workspace);
  at::Tensor w_t = to_compute_dtype(weight_hh).t();  // [H, GH]

  T* hp = buf.h.data_ptr<T>();
  T* cp = Cell::kHasCell ? buf.c.data_ptr<T>() : nullptr;
  T* gh = buf.gh.data_ptr<T>();
  const T* bias = buf.bias.defined() ? buf.bias.const_data_ptr<T>() : nullptr;
  const T* zo = Z > 0 ? zoneout.const_data_ptr<T>() : nullptr;
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = reverse ? T_ - 1 - s : s;
    const int64_t rows = steps.sizes[t], off = steps.offsets[t];
    raw_gemm<T>(w_t, rows, hp, H, gh, GH, at::Tensor(), false);
    launch(forward_pointwise<T, Cell>, blocks_for(rows * H), kThreads,
        rows, H, buf.gx.const_data_ptr<T>() + off * GH, gh, bias, hp, cp,
        buf.output.data_ptr<T>() + off * H,
        buf.workspace.data_ptr<T>() + buf.workspace_row(steps, t) * S * H,
        Z > 0 ? zo + off * Z * H : nullptr);
  }
  return buf.result();
}

template <typename T, typename Cell>
BackwardResult backward_impl(CellKind kind, const PackedSteps& steps,
                             const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                             const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& output,
                             const at::Tensor& workspace, bool reverse,
                             const at::Tensor& zoneout) {
  static_assert(!Cell::kRowReduction, "no per-step CUDA loop for a row reduction yet");
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int64_t H = weight_hh.size(1), GH = G * H, T_ = steps.steps();

  BackwardBuffers buf(kind, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output,
                      workspace);
  const T* out = buf.output.const_data_ptr<T>();
  const T* ws = buf.workspace.const_data_ptr<T>();
  const T* c0p = Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr;
  const T* zo = Z > 0 ? zoneout.const_data_ptr<T>() : nullptr;
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = reverse ? s : T_ - 1 - s;
    const int64_t rows = steps.sizes[t], off = steps.offsets[t];
    PrevRows<T> h_src = prev_rows(steps, reverse, t, out, H, buf.h0.const_data_ptr<T>(), H);
    PrevRows<T> c_src =
        Cell::kHasCell
            ? prev_rows(steps, reverse, t, ws + Cell::kCellStateSlot * H, S * H, c0p, H)
            : PrevRows<T>{nullptr, 0, 0, nullptr, 0};
    launch(backward_pointwise<T, Cell>, blocks_for(rows * H), kThreads,
        rows, H, S > 0 ? ws + off * S * H : out + off * H, h_src, c_src,
        buf.grad_output.const_data_ptr<T>() + off * H, buf.h_prev.data_ptr<T>() + off * H,
        buf.dh.data_ptr<T>(), Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr,
        buf.dgx.data_ptr<T>() + off * GH, buf.dgh.data_ptr<T>() + off * GH,
        Z > 0 ? zo + off * Z * H : nullptr);
    raw_gemm<T>(buf.weight_hh, rows, buf.dgh.data_ptr<T>() + off * GH, GH, buf.dh.data_ptr<T>(),
                H, at::Tensor(), Cell::kKeepsHiddenGrad);
  }
  return buf.finish();
}

}  // namespace per_step
}  // namespace cuda
}  // namespace fastrnn
