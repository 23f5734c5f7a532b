// The persistent CUDA path: one kernel launch per layer and direction for the
// whole sequence, forward and backward, for small hidden sizes.
//
// The rows of a packed batch are independent recurrences, so the batch rows are
// split across thread blocks (at most kPersistentMaxRows rows each) and no
// block ever waits for another: the only synchronisation is __syncthreads.
// Each block copies weight_hh into shared memory once, keeps the state of its
// rows (h and c forward, dh and dc backward) in shared memory, and walks all
// time steps, at each step t working on its rows r < batch_sizes[t] only.
// batch_sizes and the step offsets reach the device in one copy per call.
//
// Outputs and workspace have exactly the per-step path's layout
// (recurrence_cuda.cu), so either backward consumes either forward's workspace;
// the pointwise math is the same functions of csrc/cell_math.h. The backward
// kernel writes dL/d(input_proj), dL/d(hidden projection) and h_{t-1} per
// token; grad_weight_hh and grad_bias_hh are then one GEMM and one reduction
// (BackwardBuffers::finish), as on the per-step path: no atomics.
//
// Indexing: offsets of token rows are int64 (packed tensors may exceed 2^31
// elements); indices inside shared memory are int (weight_hh fits on chip).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "persistent.h"

namespace fastrnn {
namespace cuda {
namespace {

constexpr int kMaxRows = static_cast<int>(kPersistentMaxRows);
constexpr int kMaxThreads = 512;

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
    const int64_t* __restrict__ sizes,    // [T] live rows per step (device copy of batch_sizes)
    const int64_t* __restrict__ offsets,  // [T] packed index of each step's first token
    const T* __restrict__ gx,             // [N, G*H] input projection W_ih x + b_ih
    const W* __restrict__ w,              // [G*H, H] weight_hh (W: T, or bfloat16/float16)
    const T* __restrict__ bias,           // [G*H] bias_hh, or nullptr
    const T* __restrict__ h0,             // [batch, H]
    const T* __restrict__ c0,             // [batch, H] (LSTM), or nullptr
    T* __restrict__ out,                  // [N, H] output h of every token
    T* __restrict__ saved,                // [N, S*H] values backward needs (S = Cell::kSaved)
    T* __restrict__ h_n,                  // [batch, H]
    T* __restrict__ c_n) {                // [batch, H] (LSTM), or nullptr
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const int GH = G * H, R = rows_per_block;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  W* w_s = reinterpret_cast<W*>(smem_raw);
  T* h_s = reinterpret_cast<T*>(smem_raw + (sizeof(W) * GH * H + 15) / 16 * 16);
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
                    saved + tok * S * H);
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
  T* dh_s = reinterpret_cast<T*>(smem_raw + (sizeof(W) * GH * H + 15) / 16 * 16);
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

// Calls fn(W()) for the type weight_hh is read as: bfloat16/float16 weights as they are
// (computing in float), else the compute type T.
template <typename T, typename F>
auto with_weight_type(T type_tag, at::ScalarType weight_dtype, const F& fn) {
  if constexpr (std::is_same_v<T, float>) {
    if (weight_dtype == at::kHalf) return fn(c10::Half());
    if (weight_dtype == at::kBFloat16) return fn(c10::BFloat16());
  }
  return fn(type_tag);
}

// Launch shape of one call: rows per block (spreading a small batch over the
// SMs, up to kMaxRows per block for a large one), blocks, threads, shared memory.
struct Launch {
  int rows;
  unsigned blocks;
  int threads;
  int64_t smem;
};

Launch plan(CellKind kind, int64_t H, int64_t weight_elem_size, int64_t elem_size,
            int64_t batch) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t sms = prop->multiProcessorCount;
  const int64_t rows = std::min<int64_t>(kMaxRows, std::max<int64_t>(1, (batch + sms - 1) / sms));
  const int64_t GH = gate_count(kind) * H;
  const int64_t threads = std::min<int64_t>(kMaxThreads, (GH + 31) / 32 * 32);
  return {static_cast<int>(rows), static_cast<unsigned>((batch + rows - 1) / rows),
          static_cast<int>(threads),
          persistent_smem_bytes(kind, H, weight_elem_size, elem_size, rows)};
}

// Allows `kernel` more than 48 KiB of dynamic shared memory when it needs it.
template <typename K>
void allow_smem(K kernel, int64_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

// batch_sizes and step offsets on the device: one [2, T] int64 copy from pinned
// memory, ordered on the current stream before the kernel.
at::Tensor device_steps(const PackedSteps& steps, const at::Device& device) {
  const int64_t T_ = steps.steps();
  at::Tensor host = at::empty({2, T_}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  if (T_ > 0) {
    int64_t* p = host.data_ptr<int64_t>();
    std::memcpy(p, steps.sizes.data(), T_ * sizeof(int64_t));
    std::memcpy(p + T_, steps.offsets.data(), T_ * sizeof(int64_t));
  }
  return host.to(device, at::kLong, /*non_blocking=*/true);
}

template <typename T, typename Cell, typename W>
ForwardResult forward_impl(const PackedSteps& steps, const at::Tensor& input_proj,
                           const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias_hh,
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse, CellKind kind) {
  constexpr int64_t S = Cell::kSaved;
  const int64_t H = weight_hh.size(1), N = input_proj.size(0), batch = h0.size(0);
  const int64_t T_ = steps.steps();
  at::Tensor gx = input_proj.contiguous();
  at::Tensor w = weight_hh.contiguous();
  at::Tensor bias = bias_hh.has_value() ? bias_hh->contiguous() : at::Tensor();
  at::Tensor h0_t = h0.contiguous();
  at::Tensor c0_t = Cell::kHasCell ? c0.contiguous() : at::Tensor();
  at::Tensor output = at::empty({N, H}, input_proj.options());
  at::Tensor workspace = at::empty({S > 0 ? N : 0, S * H}, input_proj.options());
  at::Tensor h_n = at::empty_like(h0_t);
  at::Tensor c_n = Cell::kHasCell ? at::empty_like(c0_t) : at::Tensor();
  if (batch == 0) return {output, h_n, c_n, workspace};

  at::Tensor dev = device_steps(steps, input_proj.device());
  const Launch L = plan(kind, H, sizeof(W), sizeof(T), batch);
  auto kernel = persistent_forward_kernel<T, Cell, W>;
  allow_smem(kernel, L.smem);
  kernel<<<L.blocks, L.threads, L.smem, at::cuda::getCurrentCUDAStream()>>>(
      T_, batch, static_cast<int>(H), L.rows, reverse, dev.const_data_ptr<int64_t>(),
      dev.const_data_ptr<int64_t>() + T_, gx.const_data_ptr<T>(), w.const_data_ptr<W>(),
      bias.defined() ? bias.const_data_ptr<T>() : nullptr, h0_t.const_data_ptr<T>(),
      Cell::kHasCell ? c0_t.const_data_ptr<T>() : nullptr, output.data_ptr<T>(),
      workspace.data_ptr<T>(), h_n.data_ptr<T>(), Cell::kHasCell ? c_n.data_ptr<T>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {output, h_n, c_n, workspace};
}

template <typename T, typename Cell, typename W>
BackwardResult backward_impl(CellKind kind, const PackedSteps& steps,
                             const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                             const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& output,
                             const at::Tensor& workspace, bool reverse) {
  const int64_t H = weight_hh.size(1), batch = h0.size(0), T_ = steps.steps();
  BackwardBuffers buf(kind, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output,
                      workspace);
  if (batch > 0) {
    at::Tensor dev = device_steps(steps, output.device());
    const Launch L = plan(kind, H, sizeof(W), sizeof(T), batch);
    auto kernel = persistent_backward_kernel<T, Cell, W>;
    at::Tensor w = weight_hh.contiguous();  // buf.weight_hh is in the compute dtype
    allow_smem(kernel, L.smem);
    kernel<<<L.blocks, L.threads, L.smem, at::cuda::getCurrentCUDAStream()>>>(
        T_, batch, static_cast<int>(H), L.rows, reverse, dev.const_data_ptr<int64_t>(),
        dev.const_data_ptr<int64_t>() + T_, buf.grad_output.const_data_ptr<T>(),
        w.const_data_ptr<W>(), buf.h0.const_data_ptr<T>(),
        Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr, buf.output.const_data_ptr<T>(),
        buf.workspace.const_data_ptr<T>(), buf.dh.data_ptr<T>(),
        Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr, buf.dgx.data_ptr<T>(),
        buf.dgh.data_ptr<T>(), buf.h_prev.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return buf.finish();
}

}  // namespace

bool use_persistent(CellKind kind, int64_t H, int64_t weight_elem_size, int64_t elem_size,
                    int64_t batch) {
  const char* env = std::getenv("FASTRNN_CUDA_PATH");
  const std::string mode = env && *env ? env : "auto";
  TORCH_CHECK(mode == "auto" || mode == "persistent" || mode == "per_step",
              "fastrnn: FASTRNN_CUDA_PATH must be auto, persistent or per_step, got '", mode, "'");
  if (mode == "per_step") return false;
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t need =
      persistent_smem_bytes(kind, H, weight_elem_size, elem_size, kPersistentMaxRows);
  const int64_t have = static_cast<int64_t>(prop->sharedMemPerBlockOptin);
  const bool fits = H >= 1 && need <= have;
  if (mode == "persistent") {
    TORCH_CHECK(fits, "fastrnn: FASTRNN_CUDA_PATH=persistent, but the persistent CUDA kernels of ",
                cell_name(kind), " with hidden_size ", H, " and ", weight_elem_size * 8,
                "-bit weights",
                " need ", need, " bytes of shared memory per block and ", prop->name, " allows ",
                have, "; use FASTRNN_CUDA_PATH=auto or per_step for this size");
    return true;
  }
  return fits && batch <= 2 * kPersistentMaxRows * prop->multiProcessorCount;
}

ForwardResult persistent_forward(CellKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse) {
  return with_types(kind, input_proj.scalar_type(), [&](auto type_tag, auto cell) {
    return with_weight_type(type_tag, weight_hh.scalar_type(), [&](auto weight_tag) {
      return forward_impl<decltype(type_tag), decltype(cell), decltype(weight_tag)>(
          steps, input_proj, weight_hh, bias_hh, h0, c0, reverse, kind);
    });
  });
}

BackwardResult persistent_backward(CellKind kind, const PackedSteps& steps,
                                   const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                   const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& output, const at::Tensor& workspace,
                                   bool reverse) {
  return with_types(kind, output.scalar_type(), [&](auto type_tag, auto cell) {
    return with_weight_type(type_tag, weight_hh.scalar_type(), [&](auto weight_tag) {
      return backward_impl<decltype(type_tag), decltype(cell), decltype(weight_tag)>(
          kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output, workspace,
          reverse);
    });
  });
}

}  // namespace cuda
}  // namespace fastrnn
