// The kernels of the persistent CUDA path (persistent.cu launches them). A header
// of their own, with nothing but csrc/cell_math.h and c10's 16-bit float types, so
// that tests/emulation/ can also run these very kernels on the CPU.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "../cell_math.h"

namespace fastrnn {
namespace cuda {

// Rows of the batch one thread block of the persistent kernels owns, at most.
constexpr int64_t kPersistentMaxRows = 4;

constexpr int kMaxRows = static_cast<int>(kPersistentMaxRows);
constexpr int kMaxThreads = 512;  // per block

// The kernels' shared memory: weight_hh first (gates*H*H values in its own dtype, so
// bfloat16/float16 weights take half the room of float ones), rounded up to 16 bytes so
// that what follows stays aligned ...
C10_HOST_DEVICE inline int64_t persistent_weight_bytes(int64_t gates, int64_t H,
                                                       int64_t weight_elem_size) {
  return (weight_elem_size * gates * H * H + 15) / 16 * 16;
}

// ... then per row two H-vectors (h, c or dh, dc) and two gates*H-vectors (gate inputs
// or gate gradients) in the compute dtype: the dynamic shared memory of a launch whose
// blocks own `rows` rows.
inline int64_t persistent_smem_bytes(int64_t gates, int64_t H, int64_t weight_elem_size,
                                     int64_t elem_size, int64_t rows) {
  return persistent_weight_bytes(gates, H, weight_elem_size) +
         elem_size * rows * (2 * H + 2 * gates * H);
}

// Live rows of the block starting at row r0 among its `rows` rows at a step with
// `size` live rows in the whole batch.
__device__ inline int live_rows(int64_t size, int64_t r0, int rows) {
  const int64_t live = size - r0;
  return live <= 0 ? 0 : (live < rows ? static_cast<int>(live) : rows);
}

// Forward. Shared memory: w_s [H][G*H] (weight_hh transposed: thread n reads
// w_s[k*GH + n], consecutive threads consecutive banks), h_s [rows][H],
// c_s [rows][H], gx_s [rows][G*H] (this step's input projection), gh_s
// [rows][G*H] (W_hh h + b_hh).
template <typename T, typename Cell, typename W>
__global__ void __launch_bounds__(kMaxThreads) persistent_forward_kernel(
    int64_t steps,                        // time steps T
    int64_t batch,                        // rows at step 0 (batch_sizes[0])
    int H,                                // hidden size
    int rows_per_block,                   // rows a block owns (<= kMaxRows)
    bool reverse,                         // walk t = T-1 .. 0
    bool keep_saved,                      // saved per token; false: per row, overwritten
    const int64_t* __restrict__ sizes,    // [T] live rows per step (device copy of batch_sizes)
    const int64_t* __restrict__ offsets,  // [T] packed index of each step's first token
    const T* __restrict__ gx,             // [N, G*H] input projection W_ih x + b_ih
    const W* __restrict__ w,              // [G*H, H] weight_hh (W: T, or bfloat16/float16)
    const T* __restrict__ bias,           // [G*H] bias_hh, or nullptr
    const T* __restrict__ h0,             // [batch, H]
    const T* __restrict__ c0,             // [batch, H] (LSTM), or nullptr
    T* __restrict__ out,                  // [N, H] output h of every token
    T* __restrict__ saved,                // [N, S*H] values backward needs (S = Cell::kSaved);
                                          // [batch, S*H] scratch without keep_saved
    T* __restrict__ h_n,                  // [batch, H]
    T* __restrict__ c_n) {                // [batch, H] (LSTM), or nullptr
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const int GH = G * H, R = rows_per_block;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  W* w_s = reinterpret_cast<W*>(smem_raw);
  T* h_s = reinterpret_cast<T*>(smem_raw + persistent_weight_bytes(G, H, sizeof(W)));
  T* c_s = h_s + R * H;
  T* gx_s = c_s + R * H;
  T* gh_s = gx_s + R * GH;

  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = live_rows(batch, r0, R);
  for (int i = tid; i < GH * H; i += nthreads) w_s[(i % H) * GH + i / H] = w[i];
  for (int i = tid; i < rows * H; i += nthreads) {
    h_s[i] = h0[r0 * H + i];
    if (Cell::kHasCell) c_s[i] = c0[r0 * H + i];
  }
  __syncthreads();

  for (int64_t s = 0; s < steps; ++s) {
    const int64_t t = reverse ? steps - 1 - s : s;
    const int live = live_rows(sizes[t], r0, rows);  // the same for every thread
    if (live == 0) {
      if (reverse) continue;  // in reverse, rows join as t decreases
      break;                  // forward: batch_sizes never grows again
    }
    const int64_t tok0 = offsets[t] + r0;  // token of the block's first row at this step

    // Gate pre-activations: gh_s = b_hh + h @ W_hh^T for the live rows; the loads
    // of this step's input projection overlap the dot products.
    for (int n = tid; n < GH; n += nthreads) {
      T acc[kMaxRows], x[kMaxRows];
      const T b = bias ? bias[n] : T(0);
#pragma unroll
      for (int rr = 0; rr < kMaxRows; ++rr) {
        acc[rr] = b;
        x[rr] = rr < live ? gx[(tok0 + rr) * GH + n] : T(0);
      }
#pragma unroll 4
      for (int k = 0; k < H; ++k) {
        const T wv = static_cast<T>(w_s[k * GH + n]);
#pragma unroll
        for (int rr = 0; rr < kMaxRows; ++rr) {
          if (rr < live) acc[rr] += wv * h_s[rr * H + k];
        }
      }
#pragma unroll
      for (int rr = 0; rr < kMaxRows; ++rr) {
        if (rr < live) {
          gh_s[rr * GH + n] = acc[rr];
          gx_s[rr * GH + n] = x[rr];
        }
      }
    }
    __syncthreads();

    // Pointwise cell update of every (row, unit): h and c in place in shared memory.
    for (int i = tid; i < live * H; i += nthreads) {
      const int rr = i / H, j = i % H;
      const int64_t tok = tok0 + rr;
      Cell::forward(j, H, gx_s + rr * GH, gh_s + rr * GH, h_s + rr * H, c_s + rr * H,
                    saved + (keep_saved ? tok : r0 + rr) * S * H);
      out[tok * H + j] = h_s[rr * H + j];
    }
    __syncthreads();
  }

  for (int i = tid; i < rows * H; i += nthreads) {
    h_n[r0 * H + i] = h_s[i];
    if (Cell::kHasCell) c_n[r0 * H + i] = c_s[i];
  }
}

// Backward. Shared memory: w_s [G*H][H] (weight_hh as it is: thread k reads
// w_s[n*H + k]), dh_s [rows][H], dc_s [rows][H], dgx_s [rows][G*H], dgh_s
// [rows][G*H] (used by GRU only; the other cells' hidden-side gradient is dgx).
template <typename T, typename Cell, typename W>
__global__ void __launch_bounds__(kMaxThreads) persistent_backward_kernel(
    int64_t steps,                        // time steps T
    int64_t batch,                        // rows at step 0
    int H,                                // hidden size
    int rows_per_block,                   // rows a block owns (<= kMaxRows)
    bool reverse,                         // the forward walked t = T-1 .. 0
    const int64_t* __restrict__ sizes,    // [T] live rows per step
    const int64_t* __restrict__ offsets,  // [T] packed index of each step's first token
    const T* __restrict__ gout,           // [N, H] dL/d(output)
    const W* __restrict__ w,              // [G*H, H] weight_hh (W: T, or bfloat16/float16)
    const T* __restrict__ h0,             // [batch, H]
    const T* __restrict__ c0,             // [batch, H] (LSTM), or nullptr
    const T* __restrict__ out,            // [N, H] forward output
    const T* __restrict__ saved,          // [N, S*H] forward workspace
    T* __restrict__ dh,                   // [batch, H] grad_h_n in, grad_h0 out
    T* __restrict__ dc,                   // [batch, H] grad_c_n in, grad_c0 out (LSTM), or nullptr
    T* __restrict__ dgx,                  // [N, G*H] dL/d(input_proj)
    T* __restrict__ dgh,                  // [N, G*H] dL/d(W_hh h + b_hh) (GRU; else unused)
    T* __restrict__ h_prev) {             // [N, H] h_{t-1} of every token
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const int GH = G * H, R = rows_per_block;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  W* w_s = reinterpret_cast<W*>(smem_raw);
  T* dh_s = reinterpret_cast<T*>(smem_raw + persistent_weight_bytes(G, H, sizeof(W)));
  T* dc_s = dh_s + R * H;
  T* dgx_s = dc_s + R * H;
  T* dgh_s = dgx_s + R * GH;
  const T* dgate_s = Cell::kSeparateHiddenGrad ? dgh_s : dgx_s;  // multiplies W_hh

  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = live_rows(batch, r0, R);
  for (int i = tid; i < GH * H; i += nthreads) w_s[i] = w[i];
  for (int i = tid; i < rows * H; i += nthreads) {
    dh_s[i] = dh[r0 * H + i];
    if (Cell::kHasCell) dc_s[i] = dc[r0 * H + i];
  }
  __syncthreads();

  for (int64_t s = 0; s < steps; ++s) {
    const int64_t t = reverse ? s : steps - 1 - s;
    const int live = live_rows(sizes[t], r0, rows);  // the same for every thread
    if (live == 0) {
      if (reverse) break;  // walking t upwards, batch_sizes never grows again
      continue;            // walking t downwards, rows join as t decreases
    }
    const int64_t tok0 = offsets[t] + r0;

    // Pointwise backward of every (row, unit).
    for (int i = tid; i < live * H; i += nthreads) {
      const int rr = i / H, j = i % H;
      const int64_t r = r0 + rr, tok = tok0 + rr;
      // The token this row came from (its state before this token), or -1: h0/c0.
      int64_t prev = -1;
      if (!reverse && t > 0) {
        prev = offsets[t - 1] + r;
      } else if (reverse && t + 1 < steps && r < sizes[t + 1]) {
        prev = offsets[t + 1] + r;
      }
      const T* hp = prev >= 0 ? out + prev * H : h0 + r * H;
      const T* cp = nullptr;
      if (Cell::kHasCell) cp = prev >= 0 ? saved + prev * S * H + 4 * H : c0 + r * H;
      h_prev[tok * H + j] = hp[j];
      dh_s[rr * H + j] += gout[tok * H + j];
      const T* saved_r = S > 0 ? saved + tok * S * H : out + tok * H;
      Cell::backward(j, H, saved_r, hp, cp, dh_s + rr * H, dc_s + rr * H, dgx_s + rr * GH,
                     dgh_s + rr * GH);
      // Each thread copies out the gate gradients it has just written itself.
#pragma unroll
      for (int g = 0; g < G; ++g) {
        dgx[tok * GH + g * H + j] = dgx_s[rr * GH + g * H + j];
        if (Cell::kSeparateHiddenGrad) dgh[tok * GH + g * H + j] = dgh_s[rr * GH + g * H + j];
      }
    }
    __syncthreads();

    // dh_{t-1} += dgates @ W_hh for the live rows.
    for (int i = tid; i < live * H; i += nthreads) {
      const int rr = i / H, k = i % H;
      const T* d = dgate_s + rr * GH;
      T acc = T(0);
#pragma unroll 4
      for (int n = 0; n < GH; ++n) acc += d[n] * static_cast<T>(w_s[n * H + k]);
      dh_s[rr * H + k] += acc;
    }
    __syncthreads();
  }

  for (int i = tid; i < rows * H; i += nthreads) {
    dh[r0 * H + i] = dh_s[i];
    if (Cell::kHasCell) dc[r0 * H + i] = dc_s[i];
  }
}

}  // namespace cuda
}  // namespace fastrnn
