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
          persistent_smem_bytes(gate_count(kind), H, weight_elem_size, elem_size, rows)};
}

// Allows `kernel` more than 48 KiB of dynamic shared memory when it needs it. The
// attribute is per kernel and device and only a cap, so it is always set to the device's
// maximum: a call with a smaller size on another host thread never lowers it under a
// launch that needs more.
template <typename K>
void allow_smem(K kernel, int64_t bytes) {
  if (bytes > 48 * 1024) {
    const int optin = static_cast<int>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin);
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
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
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                           bool keep_workspace, CellKind kind) {
  constexpr int64_t S = Cell::kSaved;
  const int64_t H = weight_hh.size(1), N = input_proj.size(0), batch = h0.size(0);
  const int64_t T_ = steps.steps();
  at::Tensor gx = input_proj.contiguous();
  at::Tensor w = weight_hh.contiguous();
  at::Tensor bias = bias_hh.has_value() ? bias_hh->contiguous() : at::Tensor();
  at::Tensor h0_t = h0.contiguous();
  at::Tensor c0_t = Cell::kHasCell ? c0.contiguous() : at::Tensor();
  at::Tensor output = at::empty({N, H}, input_proj.options());
  // Without keep_workspace (no backward will follow) each row's saved values overwrite
  // one scratch row per step, and an empty workspace is returned.
  const int64_t ws_rows = S == 0 ? 0 : (keep_workspace ? N : batch);
  at::Tensor workspace = at::empty({ws_rows, S * H}, input_proj.options());
  at::Tensor h_n = at::empty_like(h0_t);
  at::Tensor c_n = Cell::kHasCell ? at::empty_like(c0_t) : at::Tensor();
  const at::Tensor result_ws = keep_workspace ? workspace : workspace.new_empty({0, S * H});
  if (batch == 0) return {output, h_n, c_n, result_ws};

  at::Tensor dev = device_steps(steps, input_proj.device());
  const Launch L = plan(kind, H, sizeof(W), sizeof(T), batch);
  auto kernel = persistent_forward_kernel<T, Cell, W>;
  allow_smem(kernel, L.smem);
  kernel<<<L.blocks, L.threads, L.smem, at::cuda::getCurrentCUDAStream()>>>(
      T_, batch, static_cast<int>(H), L.rows, reverse, keep_workspace,
      dev.const_data_ptr<int64_t>(), dev.const_data_ptr<int64_t>() + T_,
      gx.const_data_ptr<T>(), w.const_data_ptr<W>(),
      bias.defined() ? bias.const_data_ptr<T>() : nullptr, h0_t.const_data_ptr<T>(),
      Cell::kHasCell ? c0_t.const_data_ptr<T>() : nullptr, output.data_ptr<T>(),
      workspace.data_ptr<T>(), h_n.data_ptr<T>(), Cell::kHasCell ? c_n.data_ptr<T>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {output, h_n, c_n, result_ws};
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

// Blocks of this launch shape that one SM runs at once, for the forward and the backward
// kernel alike (the smaller of the two).
int resident_blocks(CellKind kind, int64_t weight_elem_size, int64_t elem_size,
                    const Launch& L) {
  const at::ScalarType dtype = elem_size == 8 ? at::kDouble : at::kFloat;
  return with_types(kind, dtype, [&](auto type_tag, auto cell) {
    using T = decltype(type_tag);
    auto count = [&](auto weight_tag) {
      using W = decltype(weight_tag);
      auto forward = persistent_forward_kernel<T, decltype(cell), W>;
      auto backward = persistent_backward_kernel<T, decltype(cell), W>;
      allow_smem(forward, L.smem);
      allow_smem(backward, L.smem);
      int f = 0, b = 0;
      C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&f, forward, L.threads, L.smem));
      C10_CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, backward, L.threads, L.smem));
      return std::min(f, b);
    };
    // Only the weights' size matters here: bfloat16 takes the same room as float16.
    return with_weight_type(type_tag, weight_elem_size == 2 ? at::kHalf : at::kFloat, count);
  });
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
  const int64_t need = persistent_smem_bytes(gate_count(kind), H, weight_elem_size, elem_size,
                                             kPersistentMaxRows);
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
  if (!fits) return false;
  // Only when all blocks run at once: a second wave would walk the whole sequence again
  // after the first, where the per-step path takes every row in each step's GEMM.
  const Launch L = plan(kind, H, weight_elem_size, elem_size, batch);
  const int64_t sms = prop->multiProcessorCount;
  return L.blocks <= sms ||
         L.blocks <= sms * resident_blocks(kind, weight_elem_size, elem_size, L);
}

ForwardResult persistent_forward(CellKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace) {
  return with_types(kind, input_proj.scalar_type(), [&](auto type_tag, auto cell) {
    return with_weight_type(type_tag, weight_hh.scalar_type(), [&](auto weight_tag) {
      return forward_impl<decltype(type_tag), decltype(cell), decltype(weight_tag)>(
          steps, input_proj, weight_hh, bias_hh, h0, c0, reverse, keep_workspace, kind);
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
