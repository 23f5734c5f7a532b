// The ops behind fastrnn.pack_padded_sequence (fastrnn/packing.py), torch's
// pack_padded_sequence as one gather of the padded batch's rows:
//   packed_rows(lengths, sorted_indices?, steps, batch_first) -> (index, batch_sizes)
//     for lengths sorted non-increasing (sorted_indices: the batch rows in that order, or
//     None for the identity), the row of the padded batch viewed as [B * T, *] ([T * B, *]
//     when not batch_first) of every packed token, steps in order, and the batch sizes;
//   gather_rows(rows, index) = rows.index_select(0, index); for a CPU index without repeats
//     its backward is a gather too (each padded row gets its token's gradient or zero):
//     index_select's backward, an index_add into zeros, took ~3x as long at the AG News shape;
//   padded_positions(batch_sizes, unsorted_indices?, steps, batch_first) -> (positions,
//     lengths) and unpack_rows(data, positions, rows, padding_value): the other way
//     (pad_packed_sequence), each token's row to its row of the padded batch, the rest
//     padding_value, whose backward is a gather.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <vector>

#include "index_map.h"

namespace fastrnn {

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_index_vector(const Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.scalar_type() == at::kLong && t.device().is_cpu(),
              "fastrnn: ", op, ": ", name, " must be a 1-D int64 tensor on the CPU, got a ",
              t.dim(), "-D ", t.scalar_type(), " tensor on ", t.device());
}

// The entries of `perm`, checked to be a permutation of [0, n) (the identity when absent), or
// with `inverse` the inverse permutation.
std::vector<int64_t> read_permutation(const c10::optional<Tensor>& perm, int64_t n,
                                      const char* op, const char* name, bool inverse) {
  std::vector<int64_t> out(n);
  if (!perm.has_value()) {
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  check_index_vector(*perm, op, name);
  TORCH_CHECK(perm->numel() == n, "fastrnn: ", op, ": ", name, " must have one entry per row (",
              n, "), got ", perm->numel());
  std::optional<std::vector<int64_t>> inv = inverse_map(*perm, n);
  TORCH_CHECK(inv.has_value(), "fastrnn: ", op, ": ", name, " must be a permutation of [0, ", n,
              ")");
  if (inverse) return *inv;
  const Tensor p = perm->contiguous();
  return {p.const_data_ptr<int64_t>(), p.const_data_ptr<int64_t>() + n};
}

std::tuple<Tensor, Tensor> packed_rows(const Tensor& lengths_in,
                                       const c10::optional<Tensor>& sorted_indices,
                                       int64_t steps, bool batch_first) {
  check_index_vector(lengths_in, "packed_rows", "lengths");
  const Tensor lengths = lengths_in.contiguous();
  const int64_t batch = lengths.numel();
  TORCH_CHECK(batch > 0, "fastrnn: packed_rows: lengths must not be empty");
  const int64_t* len = lengths.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < batch; ++r) {
    TORCH_CHECK(len[r] >= 1 && len[r] <= steps, "fastrnn: packed_rows: lengths must be in [1, ",
                steps, "] (steps), got ", len[r]);
    TORCH_CHECK(r == 0 || len[r] <= len[r - 1],
                "fastrnn: packed_rows: lengths must be sorted in non-increasing order");
  }
  const std::vector<int64_t> order =
      read_permutation(sorted_indices, batch, "packed_rows", "sorted_indices", false);
  int64_t tokens = 0;
  for (int64_t r = 0; r < batch; ++r) tokens += len[r];
  Tensor index = at::empty({tokens}, lengths.options());
  Tensor batch_sizes = at::empty({len[0]}, lengths.options());
  int64_t* out = index.data_ptr<int64_t>();
  int64_t* sizes = batch_sizes.data_ptr<int64_t>();
  int64_t live = batch;  // rows with a token at step t: a prefix, as the lengths are sorted
  for (int64_t t = 0; t < len[0]; ++t) {
    while (len[live - 1] <= t) --live;
    sizes[t] = live;
    for (int64_t r = 0; r < live; ++r) {
      *out++ = batch_first ? order[r] * steps + t : t * batch + order[r];
    }
  }
  return {index, batch_sizes};
}

// The gradient of rows.index_select(0, index) on the CPU, for an index without repeats: one
// pass over the rows, each a copy of its token's gradient or zeros (any dtype: zero bytes).
Tensor scatter_rows(const Tensor& grad_in, const Tensor& index, int64_t rows) {
  const Tensor grad = grad_in.contiguous();
  std::vector<int64_t> sizes(grad.sizes().begin(), grad.sizes().end());
  sizes[0] = rows;
  Tensor out = at::empty(sizes, grad.options());
  const int64_t row_bytes = (grad.size(0) > 0 ? grad.numel() / grad.size(0) : 0) *
                            static_cast<int64_t>(grad.element_size());
  const std::vector<int64_t> source = *inverse_map(index, rows);  // GatherRows checked it
  const char* from = static_cast<const char*>(grad.const_data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  for (int64_t r = 0; r < rows; ++r) {
    if (source[r] < 0) {
      std::memset(to + r * row_bytes, 0, row_bytes);
    } else {
      std::memcpy(to + r * row_bytes, from + source[r] * row_bytes, row_bytes);
    }
  }
  return out;
}

// For pad_packed_sequence: the row of the padded batch ([B * T, *], or [T * B, *] when not
// batch_first) of every packed token, in the caller's batch order (unsorted_indices[b] = the
// sorted row at place b, or None), and the lengths in that order.
std::tuple<Tensor, Tensor> padded_positions(const Tensor& batch_sizes_in,
                                            const c10::optional<Tensor>& unsorted_indices,
                                            int64_t steps, bool batch_first) {
  TORCH_CHECK(batch_sizes_in.dim() == 1 && batch_sizes_in.scalar_type() == at::kLong &&
                  batch_sizes_in.device().is_cpu() && batch_sizes_in.numel() > 0,
              "fastrnn: padded_positions: batch_sizes must be a non-empty 1-D int64 tensor on "
              "the CPU");
  const Tensor batch_sizes = batch_sizes_in.contiguous();
  const int64_t* bs = batch_sizes.const_data_ptr<int64_t>();
  const int64_t T_ = batch_sizes.numel(), batch = bs[0];
  TORCH_CHECK(steps >= T_, "fastrnn: padded_positions: steps (", steps, ") must be at least "
              "the number of batch sizes (", T_, ")");
  for (int64_t t = 0; t < T_; ++t) {
    TORCH_CHECK(bs[t] >= 1 && bs[t] <= (t > 0 ? bs[t - 1] : batch),
                "fastrnn: padded_positions: batch_sizes must be positive and non-increasing");
  }
  // place[r]: the place in the result of sorted row r.
  const std::vector<int64_t> place = read_permutation(unsorted_indices, batch, "padded_positions",
                                                     "unsorted_indices", true);
  int64_t tokens = 0;
  for (int64_t t = 0; t < T_; ++t) tokens += bs[t];
  Tensor positions = at::empty({tokens}, batch_sizes.options());
  Tensor lengths = at::zeros({batch}, batch_sizes.options());
  int64_t* out = positions.data_ptr<int64_t>();
  int64_t* len = lengths.data_ptr<int64_t>();
  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t r = 0; r < bs[t]; ++r) {
      *out++ = batch_first ? place[r] * steps + t : t * batch + place[r];
      len[place[r]] += 1;
    }
  }
  return {positions, lengths};
}

class GatherRows : public torch::autograd::Function<GatherRows> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& rows, const Tensor& index) {
    ctx->save_for_backward({index});
    ctx->saved_data["rows"] = rows.size(0);
    return rows.index_select(0, index);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor index = ctx->get_saved_variables()[0];
    const int64_t rows = ctx->saved_data["rows"].toInt();
    if (!at::GradMode::is_enabled() && grads[0].device().is_cpu()) {
      return {scatter_rows(grads[0], index, rows), Tensor()};
    }
    const int64_t tokens = index.numel();
    // source[i]: the token row i of the padded batch went to, or the zero row after them.
    Tensor source = at::full({rows}, tokens, index.options());
    source.index_put_({index}, at::arange(tokens, index.options()));
    const Tensor& grad = grads[0];
    std::vector<int64_t> zero_row(grad.sizes().begin(), grad.sizes().end());
    zero_row[0] = 1;
    // Differentiable ops: double backward goes through cat's and index_select's formulas.
    return {at::cat({grad, at::zeros(zero_row, grad.options())}).index_select(0, source),
            Tensor()};
  }
};

void check_gather(const Tensor& rows, const Tensor& index) {
  TORCH_CHECK(rows.dim() >= 1, "fastrnn: gather_rows: rows must have at least one dimension");
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong,
              "fastrnn: gather_rows: index must be a 1-D int64 tensor, got a ", index.dim(),
              "-D ", index.scalar_type(), " tensor");
}

Tensor gather_rows(const Tensor& rows, const Tensor& index) {
  check_gather(rows, index);
  // A CPU index without repeats (inverse_map) has the gather backward; others keep
  // index_select's autograd.
  if (at::GradMode::is_enabled() && rows.requires_grad() &&
      inverse_map(index, rows.size(0)).has_value()) {
    return GatherRows::apply(rows, index);
  }
  return rows.index_select(0, index);
}

Tensor gather_rows_below_autograd(const Tensor& rows, const Tensor& index) {
  check_gather(rows, index);
  return rows.index_select(0, index);
}

// unpack_rows(data, positions, rows, padding_value): [rows, *] filled with padding_value and
// data's row k at row positions[k] (positions without repeats); its backward is the gather
// grad.index_select(0, positions), made of ATen ops (double backward through them).
class UnpackRows : public torch::autograd::Function<UnpackRows> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& data, const Tensor& positions,
                        int64_t rows, const at::Scalar& padding_value);
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor positions = ctx->get_saved_variables()[0];
    return {grads[0].index_select(0, positions), Tensor(), Tensor(), Tensor()};
  }
};

void check_unpack(const Tensor& data, const Tensor& positions, int64_t rows) {
  TORCH_CHECK(data.dim() >= 1, "fastrnn: unpack_rows: data must have at least one dimension");
  TORCH_CHECK(positions.dim() == 1 && positions.scalar_type() == at::kLong &&
                  positions.numel() == data.size(0),
              "fastrnn: unpack_rows: positions must be a 1-D int64 tensor with one entry per "
              "row of data (", data.size(0), "), got a ", positions.dim(), "-D ",
              positions.scalar_type(), " tensor of ", positions.numel());
  TORCH_CHECK(!positions.device().is_cpu() || inverse_map(positions, rows).has_value(),
              "fastrnn: unpack_rows: positions must be distinct rows in [0, ", rows, ")");
}

Tensor unpack_rows_below_autograd(const Tensor& data, const Tensor& positions, int64_t rows,
                                  const at::Scalar& padding_value) {
  check_unpack(data, positions, rows);
  std::vector<int64_t> sizes(data.sizes().begin(), data.sizes().end());
  sizes[0] = rows;
  Tensor out = at::full(sizes, padding_value, data.options());
  if (!data.device().is_cpu()) return out.index_copy_(0, positions, data);
  const Tensor src = data.contiguous(), pos = positions.contiguous();
  const int64_t row_bytes = (src.size(0) > 0 ? src.numel() / src.size(0) : 0) *
                            static_cast<int64_t>(src.element_size());
  const char* from = static_cast<const char*>(src.const_data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  const int64_t* p = pos.const_data_ptr<int64_t>();
  for (int64_t k = 0; k < pos.numel(); ++k) {
    std::memcpy(to + p[k] * row_bytes, from + k * row_bytes, row_bytes);
  }
  return out;
}

Tensor UnpackRows::forward(AutogradContext* ctx, const Tensor& data, const Tensor& positions,
                           int64_t rows, const at::Scalar& padding_value) {
  ctx->save_for_backward({positions});
  return unpack_rows_below_autograd(data, positions, rows, padding_value);
}

Tensor unpack_rows(const Tensor& data, const Tensor& positions, int64_t rows,
                   const at::Scalar& padding_value) {
  if (at::GradMode::is_enabled() && data.requires_grad()) {
    return UnpackRows::apply(data, positions, rows, padding_value);  // checks in its forward
  }
  return unpack_rows_below_autograd(data, positions, rows, padding_value);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("packed_rows(Tensor lengths, Tensor? sorted_indices, int steps, bool batch_first) -> "
        "(Tensor index, Tensor batch_sizes)");
  m.def("gather_rows(Tensor rows, Tensor index) -> Tensor");
  m.def("padded_positions(Tensor batch_sizes, Tensor? unsorted_indices, int steps, "
        "bool batch_first) -> (Tensor positions, Tensor lengths)");
  m.def("unpack_rows(Tensor data, Tensor positions, int rows, Scalar padding_value) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("packed_rows", &packed_rows);
  m.impl("padded_positions", &padded_positions);
}
TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("gather_rows", &gather_rows);
  m.impl("unpack_rows", &unpack_rows);
}
TORCH_LIBRARY_IMPL(fastrnn, CompositeExplicitAutograd, m) {
  m.impl("gather_rows", &gather_rows_below_autograd);
  m.impl("unpack_rows", &unpack_rows_below_autograd);
}

}  // namespace fastrnn
