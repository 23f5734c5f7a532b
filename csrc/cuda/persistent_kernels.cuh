// The kernels of the persistent CUDA path (persistent.cu launches them) and their
// parameter structs. A header of its own, with nothing but csrc/cell_math.h and c10's
// 16-bit float types, so that tests/emulation/ can also run these very kernels on the
// CPU with the very parameter structs persistent.cu fills.
//
// Each kernel takes one struct by value (flash-attention's Flash_fwd_params style),
// step table included: batch_sizes, run-length encoded, travels in the kernel's
// parameters. A CUDA graph that captures a launch therefore replays it with the same
// table (no host buffer to go stale), and a step needs no memory load to know its live
// rows and first token (StepWalk keeps them in registers; the table is read only where
// the walk enters another run, at most `batch` times a launch).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <vector>

#include "../cell_math.h"

namespace fastrnn {
namespace cuda {

// Rows of the batch one thread block of the persistent kernels owns, at most.
constexpr int kPersistentMaxRows = 4;
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

// --- the step table ----------------------------------------------------------------
// batch_sizes never increases, so it is a few runs of equal sizes (at most one run per
// batch row): run i is len[i] consecutive steps of size[i] live rows. Up to
// kMaxStepRuns runs travel by value in the kernel parameters (within CUDA's classic
// 4 KiB parameter limit, so no CUDA 12.1 large-parameter support is needed); more
// runs go to a device copy (`runs_ext`, [2, count]: sizes then lengths), which
// persistent.cu only uses outside CUDA graph capture.
constexpr int kMaxStepRuns = 384;

struct StepRuns {
  int32_t count;                        // runs (>= 1)
  int32_t size[kMaxStepRuns];           // live rows of the run's steps (decreasing)
  int32_t len[kMaxStepRuns];            // steps in the run
};

// The runs of batch_sizes (`steps` >= 1 entries, each in [1, 2^31)), as [sizes..., lens...].
inline std::vector<int32_t> step_runs(const int64_t* sizes, int64_t steps) {
  std::vector<int32_t> size, len;
  for (int64_t t = 0; t < steps; ++t) {
    if (t > 0 && sizes[t] == sizes[t - 1] && len.back() < INT32_MAX) {
      ++len.back();
    } else {
      size.push_back(static_cast<int32_t>(sizes[t]));
      len.push_back(1);
    }
  }
  size.insert(size.end(), len.begin(), len.end());
  return size;
}

// --- parameters --------------------------------------------------------------------
// What both kernels share: the walk over the time steps and the launch shape.
struct PersistentShape {
  int64_t steps;                        // time steps T (>= 1)
  int64_t tokens;                       // N = sum of batch_sizes
  int64_t batch;                        // rows at step 0 (batch_sizes[0])
  int H;                                // hidden size
  int rows_per_block;                   // rows a block owns (<= kPersistentMaxRows)
  bool reverse;                         // the layer walks t = T-1 .. 0
  const int32_t* runs_ext;              // [2, count] device copy of the runs when
                                        // runs.count > kMaxStepRuns, else nullptr
  StepRuns runs;                        // runs.size/len unused with runs_ext
};

// Forward. T: compute type (float, double); W: weight_hh as stored (T, or bfloat16/float16).
template <typename T, typename W>
struct PersistentForwardParams : PersistentShape {
  bool keep_saved;                      // saved per token; false: per row, overwritten
  const T* __restrict__ gx;             // [N, G*H] input projection W_ih x + b_ih
  const W* __restrict__ w;              // [G*H, H] weight_hh
  const T* __restrict__ bias;           // [G*H] bias_hh, or nullptr
  const T* __restrict__ h0;             // [batch, H]
  const T* __restrict__ c0;             // [batch, H] (LSTM), or nullptr
  T* __restrict__ out;                  // [N, H] output h of every token
  T* __restrict__ saved;                // [N, S*H] values backward needs (S = Cell::kSaved);
                                        // [batch, S*H] scratch without keep_saved
  T* __restrict__ h_n;                  // [batch, H]
  T* __restrict__ c_n;                  // [batch, H] (LSTM), or nullptr
  const T* __restrict__ zoneout;        // [N, K*H] keep weights (Zoneout<Cell>), or nullptr
};

// Backward (same T and W).
template <typename T, typename W>
struct PersistentBackwardParams : PersistentShape {
  const T* __restrict__ gout;           // [N, H] dL/d(output)
  const W* __restrict__ w;              // [G*H, H] weight_hh
  const T* __restrict__ h0;             // [batch, H]
  const T* __restrict__ c0;             // [batch, H] (LSTM), or nullptr
  const T* __restrict__ out;            // [N, H] forward output
  const T* __restrict__ saved;          // [N, S*H] forward workspace
  const T* __restrict__ dh_n;           // [batch, H] grad_h_n
  const T* __restrict__ dc_n;           // [batch, H] grad_c_n (LSTM), or nullptr
  T* __restrict__ dh0;                  // [batch, H] grad_h0
  T* __restrict__ dc0;                  // [batch, H] grad_c0 (LSTM), or nullptr
  T* __restrict__ dgx;                  // [N, G*H] dL/d(input_proj)
  T* __restrict__ dgh;                  // [N, G*H] dL/d(W_hh h + b_hh) (GRU; else unused)
  T* __restrict__ h_prev;               // [N, H] h_{t-1} of every token
  const T* __restrict__ zoneout;        // [N, K*H] keep weights (Zoneout<Cell>), or nullptr
};

// Whole parameter structs stay within the classic 4 KiB of kernel parameters.
static_assert(sizeof(PersistentBackwardParams<double, double>) <= 4096, "kernel parameters");
static_assert(sizeof(PersistentForwardParams<double, double>) <= 4096, "kernel parameters");

// Live rows of the block starting at row r0 among its `rows` rows at a step with
// `size` live rows in the whole batch.
__device__ inline int live_rows(int64_t size, int64_t r0, int rows) {
  const int64_t live = size - r0;
  return live <= 0 ? 0 : (live < rows ? static_cast<int>(live) : rows);
}

// One launch's walk over the time steps, upwards (t = 0, 1, ..) or downwards
// (t = T-1, T-2, ..): step t's live rows and first token stay in registers; the run
// table is read only when the walk enters another run. Every thread of a block walks
// alike (all members are the same in every thread).
struct StepWalk {
  const int32_t* size;                  // [runs] (the kernel parameters' copy, or runs_ext)
  const int32_t* len;                   // [runs]
  int runs, run;                        // run: the run of step t
  bool up;
  int64_t steps, first, t, token;       // first: run's first step; token: step t's row 0

  __device__ StepWalk(const PersistentShape& p, bool up_) : up(up_), steps(p.steps) {
    size = p.runs_ext ? p.runs_ext : p.runs.size;
    len = p.runs_ext ? p.runs_ext + p.runs.count : p.runs.len;
    runs = p.runs.count;
    if (up) {
      run = 0, first = 0, t = 0, token = 0;
    } else {
      run = runs - 1, first = steps - len[run], t = steps - 1, token = p.tokens - size[run];
    }
  }
  __device__ bool valid() const { return t >= 0 && t < steps; }
  __device__ int64_t rows() const { return size[run]; }
  // Live rows of step t+1 / t-1 (0 past either end).
  __device__ int64_t rows_after() const {
    return t + 1 < first + len[run] ? size[run] : (run + 1 < runs ? size[run + 1] : 0);
  }
  __device__ int64_t rows_before() const {
    return t > first ? size[run] : (run > 0 ? size[run - 1] : 0);
  }
  // The next step of the walk: its live rows and first token.
  __device__ int64_t next_rows() const { return up ? rows_after() : rows_before(); }
  __device__ int64_t next_token() const { return up ? token + size[run] : token - rows_before(); }
  __device__ void next() {
    if (up) {
      token += size[run];
      if (++t == first + len[run] && run + 1 < runs) first = t, ++run;
    } else {
      if (--t < first && run > 0) --run, first -= len[run];
      token -= size[run];
    }
  }
  // Walking down, skips the steps with at most r0 live rows (the block's rows join
  // later); r0 < batch = size[0] ends it.
  __device__ void skip_down_to_rows_above(int64_t r0) {
    while (size[run] <= r0) {
      token -= (t - first) * size[run];  // the run's first step
      t = first - 1;
      --run;
      first -= len[run];
      token -= size[run];
    }
  }
};

// Columns of gx (gate units) a forward thread prefetches one step ahead: n = tid +
// c * blockDim.x, c < kPrefetchCols (every column at up to 2 * kMaxThreads gate units,
// which covers the whole persistent range: LSTM 4*H <= 1024); more columns load when used.
constexpr int kPrefetchCols = 2;

// Forward. Shared memory: w_s [H][G*H] (weight_hh transposed: thread n reads
// w_s[k*GH + n], consecutive threads consecutive banks), h_s [rows][H],
// c_s [rows][H], gx_s [rows][G*H] (this step's input projection), gh_s
// [rows][G*H] (W_hh h + b_hh).
template <typename T, typename Cell, typename W>
__global__ void __launch_bounds__(kMaxThreads)
    persistent_forward_kernel(const __grid_constant__ PersistentForwardParams<T, W> p) {
  static_assert(!Cell::kRowReduction, "no persistent kernel for a row reduction yet");
  constexpr int G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int H = p.H, GH = G * H, R = p.rows_per_block;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  W* w_s = reinterpret_cast<W*>(smem_raw);
  T* h_s = reinterpret_cast<T*>(smem_raw + persistent_weight_bytes(G, H, sizeof(W)));
  T* c_s = h_s + R * H;
  T* gx_s = c_s + R * H;
  T* gh_s = gx_s + R * GH;

  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = live_rows(p.batch, r0, R);
  for (int i = tid; i < GH * H; i += nthreads) w_s[(i % H) * GH + i / H] = p.w[i];
  for (int i = tid; i < rows * H; i += nthreads) {
    h_s[i] = p.h0[r0 * H + i];
    if (Cell::kHasCell) c_s[i] = p.c0[r0 * H + i];
  }
  StepWalk walk(p, /*up=*/!p.reverse);
  if (!walk.up) walk.skip_down_to_rows_above(r0);  // in reverse, rows join as t decreases

  // The input projection of the step about to run, loaded one step ahead so that the
  // loads overlap the previous step's pointwise pass and barriers.
  T x_next[kPrefetchCols][kPersistentMaxRows];
  auto prefetch = [&](int64_t size, int64_t token) {
    const int live = live_rows(size, r0, rows);
#pragma unroll
    for (int c = 0; c < kPrefetchCols; ++c) {
      const int n = tid + c * nthreads;
#pragma unroll
      for (int rr = 0; rr < kPersistentMaxRows; ++rr) {
        x_next[c][rr] = rr < live && n < GH ? p.gx[(token + r0 + rr) * GH + n] : T(0);
      }
    }
  };
  prefetch(walk.rows(), walk.token);
  __syncthreads();

  for (; walk.valid(); walk.next()) {
    const int live = live_rows(walk.rows(), r0, rows);  // the same for every thread
    if (live == 0) break;  // walking up, batch_sizes never grows again
    const int64_t tok0 = walk.token + r0;  // token of the block's first row at this step

    // Gate pre-activations: gh_s = b_hh + h @ W_hh^T for the live rows; gx_s = this
    // step's input projection (prefetched for the first kPrefetchCols columns).
    auto column = [&](int n, const T* x) {
      T acc[kPersistentMaxRows];
      const T b = p.bias ? p.bias[n] : T(0);
#pragma unroll
      for (int rr = 0; rr < kPersistentMaxRows; ++rr) acc[rr] = b;
#pragma unroll 4
      for (int k = 0; k < H; ++k) {
        const T wv = static_cast<T>(w_s[k * GH + n]);
#pragma unroll
        for (int rr = 0; rr < kPersistentMaxRows; ++rr) {
          if (rr < live) acc[rr] += wv * h_s[rr * H + k];
        }
      }
#pragma unroll
      for (int rr = 0; rr < kPersistentMaxRows; ++rr) {
        if (rr < live) {
          gh_s[rr * GH + n] = acc[rr];
          gx_s[rr * GH + n] = x[rr];
        }
      }
    };
#pragma unroll
    for (int c = 0; c < kPrefetchCols; ++c) {
      if (tid + c * nthreads < GH) column(tid + c * nthreads, x_next[c]);
    }
    for (int n = tid + kPrefetchCols * nthreads; n < GH; n += nthreads) {
      T x[kPersistentMaxRows];
#pragma unroll
      for (int rr = 0; rr < kPersistentMaxRows; ++rr) {
        x[rr] = rr < live ? p.gx[(tok0 + rr) * GH + n] : T(0);
      }
      column(n, x);
    }
    prefetch(walk.next_rows(), walk.next_token());
    __syncthreads();

    // Pointwise cell update of every (row, unit): h and c in place in shared memory.
    for (int i = tid; i < live * H; i += nthreads) {
      const int rr = i / H, j = i % H;
      const int64_t tok = tok0 + rr;
      Cell::forward(j, H, gx_s + rr * GH, gh_s + rr * GH, h_s + rr * H, c_s + rr * H,
                    p.saved + (p.keep_saved ? tok : r0 + rr) * S * H,
                    Z > 0 ? p.zoneout + tok * Z * H : nullptr);
      p.out[tok * H + j] = h_s[rr * H + j];
    }
    __syncthreads();
  }

  for (int i = tid; i < rows * H; i += nthreads) {
    p.h_n[r0 * H + i] = h_s[i];
    if (Cell::kHasCell) p.c_n[r0 * H + i] = c_s[i];
  }
}

// Backward. Shared memory: w_s [G*H][H] (weight_hh as it is: thread k reads
// w_s[n*H + k]), dh_s [rows][H], dc_s [rows][H], dgx_s [rows][G*H], dgh_s
// [rows][G*H] (GRU: the hidden-side gate gradients; the other cells' is dgx_s, and
// dgh_s holds the partial sums of the split matrix-vector product).
template <typename T, typename Cell, typename W>
__global__ void __launch_bounds__(kMaxThreads)
    persistent_backward_kernel(const __grid_constant__ PersistentBackwardParams<T, W> p) {
  static_assert(!Cell::kRowReduction, "no persistent kernel for a row reduction yet");
  constexpr int G = Cell::kGates, S = Cell::kSaved, Z = Cell::kZoneoutStates;
  const int H = p.H, GH = G * H, R = p.rows_per_block;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  W* w_s = reinterpret_cast<W*>(smem_raw);
  T* dh_s = reinterpret_cast<T*>(smem_raw + persistent_weight_bytes(G, H, sizeof(W)));
  T* dc_s = dh_s + R * H;
  T* dgx_s = dc_s + R * H;
  T* dgh_s = dgx_s + R * GH;
  const T* dgate_s = Cell::kSeparateHiddenGrad ? dgh_s : dgx_s;  // multiplies W_hh
  T* part_s = Cell::kSeparateHiddenGrad ? dgx_s : dgh_s;         // free during the product

  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = live_rows(p.batch, r0, R);
  for (int i = tid; i < GH * H; i += nthreads) w_s[i] = p.w[i];
  for (int i = tid; i < rows * H; i += nthreads) {
    dh_s[i] = p.dh_n[r0 * H + i];
    if (Cell::kHasCell) dc_s[i] = p.dc_n[r0 * H + i];
  }
  // Backward walks the forward's steps in the opposite order.
  StepWalk walk(p, /*up=*/p.reverse);
  if (!walk.up) walk.skip_down_to_rows_above(r0);  // rows join as t decreases
  __syncthreads();

  for (; walk.valid(); walk.next()) {
    const int64_t t = walk.t;
    const int live = live_rows(walk.rows(), r0, rows);  // the same for every thread
    if (live == 0) break;  // walking up, batch_sizes never grows again
    const int64_t tok0 = walk.token + r0;
    // The step each row came from (its state before this token): t-1 forward, t+1 in
    // reverse (for the rows still live there), else h0/c0.
    const int64_t prev_step_rows = p.reverse ? walk.rows_after() : (t > 0 ? walk.rows() : 0);
    const int64_t prev_token =
        p.reverse ? walk.token + walk.rows() : walk.token - walk.rows_before();

    // Pointwise backward of every (row, unit).
    for (int i = tid; i < live * H; i += nthreads) {
      const int rr = i / H, j = i % H;
      const int64_t r = r0 + rr, tok = tok0 + rr;
      // Forward: every row live at t was live at t-1.
      const int64_t prev = r < prev_step_rows ? prev_token + r : -1;
      const T* hp = prev >= 0 ? p.out + prev * H : p.h0 + r * H;
      const T* cp = nullptr;
      if (Cell::kHasCell) {
        cp = prev >= 0 ? p.saved + prev * S * H + Cell::kCellStateSlot * H : p.c0 + r * H;
      }
      p.h_prev[tok * H + j] = hp[j];
      dh_s[rr * H + j] += p.gout[tok * H + j];
      const T* saved_r = S > 0 ? p.saved + tok * S * H : p.out + tok * H;
      Cell::backward(j, H, saved_r, hp, cp, dh_s + rr * H, dc_s + rr * H, dgx_s + rr * GH,
                     dgh_s + rr * GH, Z > 0 ? p.zoneout + tok * Z * H : nullptr);
      // Each thread copies out the gate gradients it has just written itself.
#pragma unroll
      for (int g = 0; g < G; ++g) {
        p.dgx[tok * GH + g * H + j] = dgx_s[rr * GH + g * H + j];
        if (Cell::kSeparateHiddenGrad) p.dgh[tok * GH + g * H + j] = dgh_s[rr * GH + g * H + j];
      }
    }
    __syncthreads();

    // dh_{t-1} += dgates @ W_hh for the live rows: live*H dot products of length G*H.
    // With fewer of them than threads (hidden 32, one row a block: 32 of 128 threads)
    // each is split into up to G slices over all warps, whose partial sums are then
    // added in a fixed order (deterministic).
    const int units = live * H;
    const int slices = units >= nthreads ? 1 : (nthreads / units < G ? nthreads / units : G);
    if (slices == 1) {
      for (int i = tid; i < units; i += nthreads) {
        const int rr = i / H, k = i % H;
        const T* d = dgate_s + rr * GH;
        T acc = T(0);
#pragma unroll 4
        for (int n = 0; n < GH; ++n) acc += d[n] * static_cast<T>(w_s[n * H + k]);
        dh_s[rr * H + k] += acc;
      }
    } else {
      if (tid < slices * units) {  // part_s holds slices*units <= G*live*H values
        const int u = tid % units, slice = tid / units;
        const int rr = u / H, k = u % H;
        const T* d = dgate_s + rr * GH;
        T acc = T(0);
#pragma unroll 4
        for (int n = slice * GH / slices; n < (slice + 1) * GH / slices; ++n) {
          acc += d[n] * static_cast<T>(w_s[n * H + k]);
        }
        part_s[slice * units + u] = acc;
      }
      __syncthreads();
      for (int u = tid; u < units; u += nthreads) {
        T acc = part_s[u];
        for (int slice = 1; slice < slices; ++slice) acc += part_s[slice * units + u];
        dh_s[u] += acc;  // u = row * H + unit
      }
    }
    __syncthreads();
  }

  for (int i = tid; i < rows * H; i += nthreads) {
    p.dh0[r0 * H + i] = dh_s[i];
    if (Cell::kHasCell) p.dc0[r0 * H + i] = dc_s[i];
  }
}

}  // namespace cuda
}  // namespace fastrnn
