// The persistent CUDA path: one kernel launch per layer and direction for the
// whole sequence, forward and backward, for small hidden sizes.
//
// The rows of a packed batch are independent recurrences, so the batch rows are
// split across thread blocks (at most kPersistentMaxRows rows each) and no
// block ever waits for another: the only synchronisation is __syncthreads.
// Each block copies weight_hh into shared memory once, keeps the state of its
// rows (h and c forward, dh and dc backward) in shared memory, and walks all
// time steps, at each step t working on its rows r < batch_sizes[t] only.
// batch_sizes travels run-length encoded in the kernel's parameter struct
// (persistent_kernels.cuh), so a launch is one kernel and nothing else, and a
// CUDA graph that captures it replays it with the right table. Only a table of
// more than kMaxStepRuns runs needs a device copy (one host-to-device copy per
// call); under graph capture such a call takes the per-step path instead.
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

#include <c10/cuda/CUDAFunctions.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

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
// SMs, up to kPersistentMaxRows per block for a large one), blocks, threads, shared memory.
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
  const int64_t rows =
      std::min<int64_t>(kPersistentMaxRows, std::max<int64_t>(1, (batch + sms - 1) / sms));
  const int64_t G = cell_info(kind).gates;
  const int64_t threads = std::min<int64_t>(kMaxThreads, (G * H + 31) / 32 * 32);
  return {static_cast<int>(rows), static_cast<unsigned>((batch + rows - 1) / rows),
          static_cast<int>(threads),
          persistent_smem_bytes(G, H, weight_elem_size, elem_size, rows)};
}

// Allows kKernel more than 48 KiB of dynamic shared memory when it needs it, once per
// kernel and device (the attribute is per kernel and device, and only a cap, so it is set
// to the device's maximum: a call with a smaller size never lowers it under a launch that
// needs more).
template <auto kKernel>
void allow_smem(int64_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::once_flag done[C10_COMPILE_TIME_MAX_GPUS];
  const c10::DeviceIndex device = c10::cuda::current_device();
  std::call_once(done[device], [] {  // an exception leaves the flag unset: retried next call
    const int optin =
        static_cast<int>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin);
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  });
}

bool capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(at::cuda::getCurrentCUDAStream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

int64_t run_count(const PackedSteps& steps) {
  int64_t runs = 0;
  for (int64_t t = 0; t < steps.steps(); ++t) {
    runs += t == 0 || steps.sizes[t] != steps.sizes[t - 1];
  }
  return runs;
}

// Fills the walk of a launch; returns the device copy of the step runs when there are
// more than kMaxStepRuns (else an undefined tensor: the runs are in p.runs). The copy is
// stream-ordered before the kernel, and the caching allocator reuses its memory only
// after what is queued on the stream, so it may be freed right after the launch.
at::Tensor fill_shape(PersistentShape& p, const PackedSteps& steps, int64_t tokens,
                      int64_t batch, int64_t H, const Launch& L, bool reverse,
                      const at::Device& device) {
  p.steps = steps.steps();
  p.tokens = tokens;
  p.batch = batch;
  p.H = static_cast<int>(H);
  p.rows_per_block = L.rows;
  p.reverse = reverse;
  p.runs_ext = nullptr;
  const std::vector<int32_t> runs = step_runs(steps.sizes.data(), steps.steps());
  const int64_t count = static_cast<int64_t>(runs.size()) / 2;
  p.runs.count = static_cast<int32_t>(count);
  if (count <= kMaxStepRuns) {
    std::copy(runs.begin(), runs.begin() + count, p.runs.size);
    std::copy(runs.begin() + count, runs.end(), p.runs.len);
    return at::Tensor();
  }
  // use_persistent keeps such calls off this path under graph capture: the copy below
  // would replay from a host buffer that is long gone.
  TORCH_CHECK(!capturing(), "fastrnn: internal error: a step table of ", count,
              " runs on the persistent path under CUDA graph capture");
  at::Tensor host =
      at::empty({2 * count}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  std::memcpy(host.data_ptr<int32_t>(), runs.data(), runs.size() * sizeof(int32_t));
  at::Tensor dev = host.to(device, at::kInt, /*non_blocking=*/true);
  p.runs_ext = dev.const_data_ptr<int32_t>();
  return dev;
}

template <typename T, typename Cell, typename W>
ForwardResult forward_impl(CellKind kind, const PackedSteps& steps, const at::Tensor& input_proj,
                           const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias_hh,
                           const at::Tensor& h0, const at::Tensor& c0, bool reverse,
                           bool keep_workspace, const at::Tensor& zoneout) {
  const int64_t H = weight_hh.size(1), N = input_proj.size(0), batch = h0.size(0);
  // The kernel reads h0/c0 and writes h_n/c_n (buf.h/buf.c) itself.
  ForwardBuffers buf(cell_info_of<Cell>(), input_proj, bias_hh, h0, c0, keep_workspace,
                     /*fresh_state=*/true);
  const at::Tensor w = weight_hh.contiguous();
  const at::Tensor h0_t = h0.contiguous();
  const at::Tensor c0_t = Cell::kHasCell ? c0.contiguous() : at::Tensor();
  if (batch == 0) return buf.result();
  if (steps.steps() == 0) {  // nothing to walk: h_n = h0
    buf.h.copy_(h0_t);
    if (Cell::kHasCell) buf.c.copy_(c0_t);
    return buf.result();
  }

  const Launch L = plan(kind, H, sizeof(W), sizeof(T), batch);
  PersistentForwardParams<T, W> p{};
  const at::Tensor runs_ext =
      fill_shape(p, steps, N, batch, H, L, reverse, input_proj.device());
  p.keep_saved = keep_workspace;
  p.gx = buf.gx.const_data_ptr<T>();
  p.w = w.const_data_ptr<W>();
  p.bias = buf.bias.defined() ? buf.bias.const_data_ptr<T>() : nullptr;
  p.h0 = h0_t.const_data_ptr<T>();
  p.c0 = Cell::kHasCell ? c0_t.const_data_ptr<T>() : nullptr;
  p.out = buf.output.data_ptr<T>();
  p.saved = buf.workspace.data_ptr<T>();
  p.h_n = buf.h.data_ptr<T>();
  p.c_n = Cell::kHasCell ? buf.c.data_ptr<T>() : nullptr;
  p.zoneout = Cell::kZoneoutStates > 0 ? zoneout.const_data_ptr<T>() : nullptr;
  constexpr auto kernel = persistent_forward_kernel<T, Cell, W>;
  allow_smem<kernel>(L.smem);
  kernel<<<L.blocks, L.threads, L.smem, at::cuda::getCurrentCUDAStream()>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return buf.result();
}

template <typename T, typename Cell, typename W>
BackwardResult backward_impl(CellKind kind, const PackedSteps& steps,
                             const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                             const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& output,
                             const at::Tensor& workspace, bool reverse,
                             const at::Tensor& zoneout) {
  const int64_t H = weight_hh.size(1), batch = h0.size(0), N = output.size(0);
  // The kernel reads grad_h_n/grad_c_n and the op's weight_hh (16-bit weights stay 16-bit)
  // itself: no copies of them in the buffers.
  BackwardBuffers buf(kind, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output,
                      workspace, /*fresh_state_grads=*/true);
  if (batch > 0 && steps.steps() > 0) {
    const Launch L = plan(kind, H, sizeof(W), sizeof(T), batch);
    const at::Tensor w = weight_hh.contiguous();
    const at::Tensor dh_n = grad_h_n.contiguous();
    const at::Tensor dc_n = Cell::kHasCell ? grad_c_n.contiguous() : at::Tensor();
    PersistentBackwardParams<T, W> p{};
    const at::Tensor runs_ext = fill_shape(p, steps, N, batch, H, L, reverse, output.device());
    p.gout = buf.grad_output.const_data_ptr<T>();
    p.w = w.const_data_ptr<W>();
    p.h0 = buf.h0.const_data_ptr<T>();
    p.c0 = Cell::kHasCell ? buf.c0.const_data_ptr<T>() : nullptr;
    p.out = buf.output.const_data_ptr<T>();
    p.saved = buf.workspace.const_data_ptr<T>();
    p.dh_n = dh_n.const_data_ptr<T>();
    p.dc_n = Cell::kHasCell ? dc_n.const_data_ptr<T>() : nullptr;
    p.dh0 = buf.dh.data_ptr<T>();
    p.dc0 = Cell::kHasCell ? buf.dc.data_ptr<T>() : nullptr;
    p.dgx = buf.dgx.data_ptr<T>();
    p.dgh = buf.dgh.data_ptr<T>();
    p.h_prev = buf.h_prev.data_ptr<T>();
    p.zoneout = Cell::kZoneoutStates > 0 ? zoneout.const_data_ptr<T>() : nullptr;
    constexpr auto kernel = persistent_backward_kernel<T, Cell, W>;
    allow_smem<kernel>(L.smem);
    kernel<<<L.blocks, L.threads, L.smem, at::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    // Nothing to walk: grad_h0 = grad_h_n.
    buf.dh.copy_(grad_h_n);
    if (Cell::kHasCell) buf.dc.copy_(grad_c_n);
  }
  return buf.finish();
}

// Blocks of this launch shape that one SM runs at once, for the forward and the backward
// kernel alike (the smaller of the two).
int resident_blocks(CellKind kind, bool zoneout, int64_t weight_elem_size, int64_t elem_size,
                    const Launch& L) {
  const at::ScalarType dtype = elem_size == 8 ? at::kDouble : at::kFloat;
  return with_types(kind, zoneout, dtype, [&](auto type_tag, auto cell) {
    using T = decltype(type_tag);
    auto count = [&](auto weight_tag) {
      using W = decltype(weight_tag);
      constexpr auto forward = persistent_forward_kernel<T, decltype(cell), W>;
      constexpr auto backward = persistent_backward_kernel<T, decltype(cell), W>;
      allow_smem<forward>(L.smem);
      allow_smem<backward>(L.smem);
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

bool use_persistent(CellKind kind, const PackedSteps& steps, int64_t H,
                    int64_t weight_elem_size, int64_t elem_size, int64_t batch, bool zoneout) {
  const char* env = std::getenv("FASTRNN_CUDA_PATH");
  const std::string mode = env && *env ? env : "auto";
  TORCH_CHECK(mode == "auto" || mode == "persistent" || mode == "per_step",
              "fastrnn: FASTRNN_CUDA_PATH must be auto, persistent or per_step, got '", mode, "'");
  if (mode == "per_step") return false;
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t need = persistent_smem_bytes(cell_info(kind).gates, H, weight_elem_size,
                                             elem_size, kPersistentMaxRows);
  const int64_t have = static_cast<int64_t>(prop->sharedMemPerBlockOptin);
  const bool fits = H >= 1 && need <= have && batch <= INT32_MAX;
  // Under CUDA graph capture the step table must travel in the kernel parameters.
  const int64_t runs = run_count(steps);
  const bool graph_safe = runs <= kMaxStepRuns || !capturing();
  if (mode == "persistent") {
    TORCH_CHECK(fits, "fastrnn: FASTRNN_CUDA_PATH=persistent, but the persistent CUDA kernels of ",
                cell_name(kind), " with hidden_size ", H, " and ", weight_elem_size * 8,
                "-bit weights",
                " need ", need, " bytes of shared memory per block and ", prop->name, " allows ",
                have, "; use FASTRNN_CUDA_PATH=auto or per_step for this size");
    TORCH_CHECK(graph_safe, "fastrnn: FASTRNN_CUDA_PATH=persistent under CUDA graph capture "
                "needs batch_sizes made of at most ", kMaxStepRuns, " runs of equal values, "
                "got ", runs, "; use FASTRNN_CUDA_PATH=auto or per_step for this batch");
    return true;
  }
  if (!fits || !graph_safe) return false;
  // Only when all blocks run at once: a second wave would walk the whole sequence again
  // after the first, where the per-step path takes every row in each step's GEMM.
  const Launch L = plan(kind, H, weight_elem_size, elem_size, batch);
  const int64_t sms = prop->multiProcessorCount;
  return L.blocks <= sms ||
         L.blocks <= sms * resident_blocks(kind, zoneout, weight_elem_size, elem_size, L);
}

ForwardResult persistent_forward(CellKind kind, const PackedSteps& steps,
                                 const at::Tensor& input_proj, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& bias_hh, const at::Tensor& h0,
                                 const at::Tensor& c0, bool reverse, bool keep_workspace,
                                 const at::Tensor& zoneout) {
  return with_types(kind, zoneout.defined(), input_proj.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return with_weight_type(type_tag, weight_hh.scalar_type(), [&](auto weight_tag) {
      return forward_impl<decltype(type_tag), decltype(cell), decltype(weight_tag)>(
          kind, steps, input_proj, weight_hh, bias_hh, h0, c0, reverse, keep_workspace,
          zoneout);
    });
  });
}

BackwardResult persistent_backward(CellKind kind, const PackedSteps& steps,
                                   const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const at::Tensor& weight_hh,
                                   const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& output, const at::Tensor& workspace,
                                   bool reverse, const at::Tensor& zoneout) {
  return with_types(kind, zoneout.defined(), output.scalar_type(),
                    [&](auto type_tag, auto cell) {
    return with_weight_type(type_tag, weight_hh.scalar_type(), [&](auto weight_tag) {
      return backward_impl<decltype(type_tag), decltype(cell), decltype(weight_tag)>(
          kind, steps, grad_output, grad_h_n, grad_c_n, weight_hh, h0, c0, output, workspace,
          reverse, zoneout);
    });
  });
}

}  // namespace cuda
}  // namespace fastrnn
