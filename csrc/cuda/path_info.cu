// Which CUDA path (persistent or per-step, persistent.h) a call would take on the
// current device (`python -m fastrnn` shows it for a few hidden sizes), and the persistent
// kernels' shared-memory size and rows per block (tests/test_cuda.py).
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <string>

#include "persistent.h"

namespace fastrnn {
namespace cuda {
namespace {

std::string cuda_path(const std::string& cell, int64_t hidden_size, at::ScalarType dtype,
                      int64_t batch) {
  TORCH_CHECK(hidden_size > 0, "fastrnn: cuda_path: hidden_size must be positive, got ",
              hidden_size);
  TORCH_CHECK(batch > 0, "fastrnn: cuda_path: batch must be positive, got ", batch);
  // A padded batch of `batch` rows: one run of equal batch sizes (steps of any count).
  PackedSteps steps;
  steps.sizes = {batch};
  steps.offsets = {0};
  return use_persistent(cell_kind(cell, "cuda_path"), steps, hidden_size,
                        c10::elementSize(dtype), c10::elementSize(compute_dtype(dtype)), batch)
             ? "persistent"
             : "per_step";
}

// The dynamic shared memory the persistent kernels of `cell` ask for with
// kPersistentMaxRows rows a block, weights of `dtype` (computing in compute_dtype): what
// use_persistent compares with the device's limit (tests/test_cuda.py reads it).
int64_t persistent_smem(const std::string& cell, int64_t hidden_size, at::ScalarType dtype) {
  TORCH_CHECK(hidden_size > 0, "fastrnn: persistent_smem_bytes: hidden_size must be positive, "
              "got ", hidden_size);
  return persistent_smem_bytes(cell_info(cell_kind(cell, "persistent_smem_bytes")).gates,
                               hidden_size, c10::elementSize(dtype),
                               c10::elementSize(compute_dtype(dtype)), kPersistentMaxRows);
}

int64_t persistent_max_rows() { return kPersistentMaxRows; }

std::string cuda_build_info() {
  return "cudart=" + std::to_string(CUDART_VERSION);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cuda_path(str cell, int hidden_size, ScalarType dtype, int batch) -> str", &cuda_path);
  m.def("cuda_build_info() -> str", &cuda_build_info);
  m.def("persistent_smem_bytes(str cell, int hidden_size, ScalarType dtype) -> int",
        &persistent_smem);
  m.def("persistent_max_rows() -> int", &persistent_max_rows);
}

}  // namespace cuda
}  // namespace fastrnn
