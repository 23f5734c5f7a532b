// The cell table, exported to Python as fastrnn::cell_table() (fastrnn/cells.py parses
// it into fastrnn.cells.CELLS), and the lookup of a cell by name.
#include <torch/library.h>

#include <string>

#include "cells.h"

namespace fastrnn {

CellKind cell_kind(const std::string& name, const char* what) {
  std::string names;
  for (int i = 0; i < kCellCount; ++i) {
    const CellKind kind = static_cast<CellKind>(i);
    if (name == cell_name(kind)) return kind;
    names += std::string(i ? ", " : "") + cell_name(kind);
  }
  TORCH_CHECK(false, "fastrnn: ", what, ": cell must be one of ", names, ", got '", name, "'");
}

namespace {

// "name:gates:saved:has_cell:zoneout_saved" per cell, joined by ';', e.g.
// "lstm:4:5:1:6;gru:3:4:0:4;..." (zoneout_saved: the saved values of Zoneout<Cell>).
std::string cell_table() {
  std::string table;
  for (int i = 0; i < kCellCount; ++i) {
    const CellInfo c = cell_info(static_cast<CellKind>(i));
    table += std::string(i ? ";" : "") + c.name + ":" + std::to_string(c.gates) + ":" +
             std::to_string(c.saved) + ":" + (c.has_cell ? "1" : "0") + ":" +
             std::to_string(cell_info(static_cast<CellKind>(i), true).saved);
  }
  return table;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cell_table() -> str", &cell_table);
}

}  // namespace fastrnn
