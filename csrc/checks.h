// Argument checks shared by the op glue (csrc/ops.cpp, csrc/layer_norm_ops.cpp): each
// names the argument and what was expected, as TORCH_CHECK errors.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <utility>

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

}  // namespace fastrnn
