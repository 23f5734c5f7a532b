// Argument checks shared by the op glue (csrc/ops.cpp, layer.cpp, layer_norm_ops.cpp): each
// names the argument and what was expected, as TORCH_CHECK errors.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <utility>

#include "cells.h"

namespace fastrnn {

// A required tensor passed as None from Python arrives undefined.
inline void check_defined(
    std::initializer_list<std::pair<const at::Tensor*, const char*>> tensors) {
  for (const auto& [t, name] : tensors) {
    TORCH_CHECK(t->defined(), "fastrnn: ", name, " must be a tensor, got None");
  }
}

inline void check_floating(const at::Tensor& t, const char* name) {
  auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 ||
                  dtype == at::kHalf,
              "fastrnn: ", name, " must be float32, float64, bfloat16 or float16, got ", dtype);
}

inline void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                        const char* meaning) {
  TORCH_CHECK(t.sizes() == expected, "fastrnn: ", name, " must have shape ", expected, " (",
              meaning, "), got ", t.sizes());
}

inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fastrnn: ", name, " must have dtype ",
              ref.scalar_type(), " (that of weight_hh), got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "fastrnn: ", name, " must be on ", ref.device(),
              " (the device of weight_hh), got ", t.device());
}

// Checks weight_hh ([G*H, H], floating, H >= 1) and returns the hidden size H.
inline int64_t check_weight_hh(CellKind kind, const at::Tensor& weight_hh) {
  const int64_t G = cell_info(kind).gates;
  check_floating(weight_hh, "weight_hh");
  TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.size(0) == G * weight_hh.size(1),
              "fastrnn: weight_hh of ", cell_name(kind), " must have shape [", G,
              "*hidden_size, hidden_size], got ", weight_hh.sizes());
  const int64_t H = weight_hh.size(1);
  TORCH_CHECK(H >= 1, "fastrnn: hidden_size (weight_hh.size(1)) must be at least 1, got ", H);
  return H;
}

}  // namespace fastrnn
