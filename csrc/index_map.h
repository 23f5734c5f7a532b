// Reading a CPU index that names distinct rows (csrc/batch_order.cpp, csrc/packing.cpp): the
// gather by such an index has a gather by its inverse as its gradient.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace fastrnn {

// For a 1-D int64 `index` on the CPU whose entries are distinct rows in [0, rows):
// inverse[r] = the position of r in `index`, or -1 for a row it does not name. nullopt for any
// other index (on another device, out of range, or with a repeat).
inline std::optional<std::vector<int64_t>> inverse_map(const at::Tensor& index, int64_t rows) {
  if (!index.device().is_cpu() || index.scalar_type() != at::kLong || index.dim() != 1) {
    return std::nullopt;
  }
  const at::Tensor idx = index.contiguous();
  const int64_t* p = idx.const_data_ptr<int64_t>();
  std::vector<int64_t> inverse(rows, -1);
  for (int64_t i = 0; i < idx.numel(); ++i) {
    if (p[i] < 0 || p[i] >= rows || inverse[p[i]] != -1) return std::nullopt;
    inverse[p[i]] = i;
  }
  return inverse;
}

}  // namespace fastrnn
