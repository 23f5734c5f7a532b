"""The cells of the extension, read from it (``torch.ops.fastrnn.cell_table()``, built
from each cell's traits in csrc/cell_math.h) rather than repeated here.

``CELLS`` maps a cell's name (the prefix of its ops ``torch.ops.fastrnn.<name>_forward``
and ``_backward``) to ``(gates G, saved values per hidden unit S, has a cell state c)``,
in the extension's order.
"""
from typing import Dict, Tuple

import torch

from ._extension import _C  # noqa: F401  (loads the library: registers torch.ops.fastrnn.*)

__all__ = ["CELLS", "parse_cell_table"]


def parse_cell_table(table: str) -> Dict[str, Tuple[int, int, bool]]:
    """``"lstm:4:5:1;gru:3:4:0"`` -> ``{"lstm": (4, 5, True), "gru": (3, 4, False)}``."""
    cells = {}
    for entry in table.split(";"):
        name, gates, saved, has_cell = entry.split(":")
        cells[name] = (int(gates), int(saved), has_cell == "1")
    return cells


CELLS = parse_cell_table(torch.ops.fastrnn.cell_table())
