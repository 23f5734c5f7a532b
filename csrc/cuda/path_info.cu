// Which CUDA path (persistent or per-step, persistent.h) a call would take on the
// current device: `python -m fastrnn` shows it for a few hidden sizes.
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <string>

#include "persistent.h"

namespace fastrnn {
namespace cuda {
namespace {

CellKind cell_kind(const std::string& cell) {
  if (cell == "lstm") return CellKind::LSTM;
  if (cell == "gru") return CellKind::GRU;
  if (cell == "rnn_tanh") return CellKind::RNN_TANH;
  TORCH_CHECK(cell == "rnn_relu", "fastrnn: cuda_path: cell must be one of lstm, gru, rnn_tanh, "
              "rnn_relu, got '", cell, "'");
  return CellKind::RNN_RELU;
}

std::string cuda_path(const std::string& cell, int64_t hidden_size, at::ScalarType dtype,
                      int64_t batch) {
  TORCH_CHECK(hidden_size > 0, "fastrnn: cuda_path: hidden_size must be positive, got ",
              hidden_size);
  TORCH_CHECK(batch > 0, "fastrnn: cuda_path: batch must be positive, got ", batch);
  const int64_t size = c10::elementSize(dtype);
  // A padded batch of `batch` rows: one run of equal batch sizes (steps of any count).
  PackedSteps steps;
  steps.sizes = {batch};
  steps.offsets = {0};
  return use_persistent(cell_kind(cell), steps, hidden_size, size, size, batch) ? "persistent"
                                                                                 : "per_step";
}

std::string cuda_build_info() {
  return "cudart=" + std::to_string(CUDART_VERSION);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cuda_path(str cell, int hidden_size, ScalarType dtype, int batch) -> str", &cuda_path);
  m.def("cuda_build_info() -> str", &cuda_build_info);
}

}  // namespace cuda
}  // namespace fastrnn
