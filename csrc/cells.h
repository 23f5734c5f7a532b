// The cells fastrnn knows, each described once by its struct in csrc/cell_math.h: this
// header turns the run-time cell kind into that struct (with_cell) and its traits
// (cell_info). Free of ATen, like cell_math.h, so that tests/emulation/ can use it.
// Adding a cell: docs/new-cell.md.
#pragma once

#include <cstdint>
#include <string>

#include "cell_math.h"

namespace fastrnn {

// In the order of cell_table() (and so of fastrnn.cells.CELLS).
enum class CellKind { LSTM, GRU, RNN_TANH, RNN_RELU };
constexpr int kCellCount = 4;

// Calls fn(Cell()) with the struct of `kind` in compute type T: the one place where the
// run-time cell kind becomes a type.
template <typename T, typename F>
auto with_cell(CellKind kind, const F& fn) {
  switch (kind) {
    case CellKind::LSTM: return fn(LSTMCell<T>());
    case CellKind::GRU: return fn(GRUCell<T>());
    case CellKind::RNN_TANH: return fn(RNNCell<T, false>());
    default: return fn(RNNCell<T, true>());
  }
}

// The same with zoneout (an op given a zoneout tensor): fn(Zoneout<Cell>()) then, a type
// of its own, so that the loops of plain cells stay as they are.
template <typename T, typename F>
auto with_cell(CellKind kind, bool zoneout, const F& fn) {
  return with_cell<T>(kind, [&](auto cell) {
    return zoneout ? fn(Zoneout<decltype(cell)>()) : fn(cell);
  });
}

// A cell's traits at run time (see cell_math.h for their meaning).
struct CellInfo {
  const char* name;
  int64_t gates, saved;
  bool has_cell, separate_hidden_grad;
};

template <typename Cell>
CellInfo cell_info_of() {
  return CellInfo{Cell::kName, Cell::kGates, Cell::kSaved, Cell::kHasCell,
                  Cell::kSeparateHiddenGrad};
}

// `zoneout`: of Zoneout<Cell> (more saved values per unit, cell_math.h).
inline CellInfo cell_info(CellKind kind, bool zoneout = false) {
  return with_cell<float>(kind, zoneout,
                          [](auto cell) { return cell_info_of<decltype(cell)>(); });
}

inline const char* cell_name(CellKind kind) { return cell_info(kind).name; }

// The kind named `name` (an error listing the names otherwise); `what` names the caller
// in the error. Defined in cells.cpp.
CellKind cell_kind(const std::string& name, const char* what);

}  // namespace fastrnn
