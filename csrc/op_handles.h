// Calling fastrnn's own ops from C++ through the dispatcher (csrc/layer.cpp, csrc/stack.cpp),
// so that every device's kernels and every dispatch key (autograd, modes) apply.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <string>
#include <vector>

#include "cells.h"

namespace fastrnn {

// An undefined tensor as the schema's None.
inline c10::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

// The ops `fastrnn::<cell><suffix>` of every cell, in CellKind order (callers keep them in a
// static: looked up once each, not on every call).
inline std::vector<c10::OperatorHandle> cell_ops(const char* suffix) {
  std::vector<c10::OperatorHandle> handles;
  for (int i = 0; i < kCellCount; ++i) {
    const std::string name =
        std::string("fastrnn::") + cell_name(static_cast<CellKind>(i)) + suffix;
    handles.push_back(c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), ""));
  }
  return handles;
}

}  // namespace fastrnn
