"""The cells of the extension, read from it (``torch.ops.fastrnn.cell_table()``, built
from each cell's traits in csrc/cell_math.h) rather than repeated here.

``CELLS`` maps a cell's name (the prefix of its ops ``torch.ops.fastrnn.<name>_forward``
and ``_backward``) to ``(gates G, saved values per hidden unit S, has a cell state c)``,
in the extension's order; ``ZONEOUT_SAVED`` maps it to S with zoneout (the ops given a
``zoneout`` tensor save more: the ``Zoneout`` wrapper of csrc/cell_math.h).
"""
from typing import Dict, Tuple

import torch

from ._extension import _C  # noqa: F401  (loads the library: registers torch.ops.fastrnn.*)

__all__ = ["CELLS", "ZONEOUT_SAVED", "parse_cell_table", "parse_zoneout_saved"]


def parse_cell_table(table: str) -> Dict[str, Tuple[int, int, bool]]:
    """``"lstm:4:5:1:6;gru:3:4:0:4"`` -> ``{"lstm": (4, 5, True), "gru": (3, 4, False)}``
    (the fifth field, optional here, is parse_zoneout_saved's)."""
    cells = {}
    for entry in table.split(";"):
        name, gates, saved, has_cell = entry.split(":")[:4]
        cells[name] = (int(gates), int(saved), has_cell == "1")
    return cells


def parse_zoneout_saved(table: str) -> Dict[str, int]:
    """``"lstm:4:5:1:6;gru:3:4:0:4"`` -> ``{"lstm": 6, "gru": 4}``: saved values per hidden
    unit with zoneout."""
    return {fields[0]: int(fields[4]) for fields in (e.split(":") for e in table.split(";"))}


CELLS = parse_cell_table(torch.ops.fastrnn.cell_table())
ZONEOUT_SAVED = parse_zoneout_saved(torch.ops.fastrnn.cell_table())
