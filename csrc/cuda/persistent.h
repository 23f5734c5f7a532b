// The two CUDA paths and the choice between them.
//
// per-step (recurrence_cuda.cu): per time step one cuBLAS GEMM on the live rows
//   and one fused pointwise kernel; any hidden size.
// persistent (persistent.cu): one kernel launch per layer and direction for the
//   whole sequence; weight_hh and the row states stay in shared memory. Only when
//   weight_hh fits on chip (small hidden sizes), where per-step launches, not
//   FLOPs, are the cost.
// FASTRNN_CUDA_PATH=auto (default) | persistent | per_step picks one; it is read
// on every call, so tests and benchmarks can force either.
#pragma once

#include "../cell_math.h"
#include "../recurrence.h"
#include "persistent_kernels.cuh"

namespace fastrnn {
namespace cuda {

// Whether this call takes the persistent path: FASTRNN_CUDA_PATH=per_step -> no;
// persistent -> yes, or a clear error when the kernels do not fit the current
// device (or, under CUDA graph capture, batch_sizes has more than kMaxStepRuns runs);
// auto (or unset) -> yes when they fit (persistent_smem_bytes with kPersistentMaxRows
// rows <= the device's opt-in shared memory per block), all blocks of the launch are
// resident at once (one wave: occupancy x SMs), and, under graph capture, the step
// table fits the kernel parameters.
// `zoneout`: the call runs Zoneout<Cell> (its kernels' occupancy is counted).
bool use_persistent(CellKind kind, const PackedSteps& steps, int64_t H, int64_t weight_elem_size,
                    int64_t elem_size, int64_t batch, bool zoneout = false);

// The persistent path; same contract as recurrence_forward/recurrence_backward
// (recurrence.h), and the same output/workspace layout as the per-step path, so
// either backward consumes either forward's workspace.
ForwardFn persistent_forward;
BackwardFn persistent_backward;

}  // namespace cuda
}  // namespace fastrnn
