"""The cell table: Python's CELLS is the extension's (csrc/cell_math.h, csrc/cells.h), it
agrees with torch.nn and with what the kernels produce, and every cell's ops are
registered for every device this build has kernels for (docs/new-cell.md)."""
import pytest
import torch

from fastrnn import cells, ops
from fastrnn.layer_norm_ops import LAYER_NORM_CELLS
from fastrnn.info import build_info
from helpers import TORCH_CELLS

ALL_CELLS = list(cells.CELLS)


def test_python_cells_are_the_extension_table():
    assert ops.CELLS is cells.CELLS
    assert cells.CELLS == cells.parse_cell_table(torch.ops.fastrnn.cell_table())
    assert ALL_CELLS[:4] == ["lstm", "gru", "rnn_tanh", "rnn_relu"]  # CellKind's order


def test_parse_cell_table():
    assert cells.parse_cell_table("lstm:4:5:1;gru:3:4:0") == {"lstm": (4, 5, True),
                                                            "gru": (3, 4, False)}


def test_every_cell_has_a_torch_reference():
    assert set(TORCH_CELLS) == set(cells.CELLS)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gates_match_torch_nn(cell):
    gates = cells.CELLS[cell][0]
    cls, extra = TORCH_CELLS[cell]
    module = cls(3, 5, **extra)
    assert module.weight_hh_l0.shape == (gates * 5, 5)
    assert module.weight_ih_l0.shape == (gates * 5, 3)


def fastrnn_ops():
    """(name, overload) of every op in the fastrnn namespace with a _forward/_backward suffix."""
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastrnn::")]
    return {n.split("::", 1)[1] for n in names if n.endswith(("_forward", "_backward"))}


def test_the_ops_are_exactly_the_tables():
    # The plain cells' table and the LayerNorm cells' (csrc/layer_norm.h), which take the
    # norms' parameters and so have ops of their own.
    assert fastrnn_ops() == {f"{cell}_{d}" for cell in [*cells.CELLS, *LAYER_NORM_CELLS]
                             for d in ("forward", "backward")}


def test_layer_norm_table():
    assert LAYER_NORM_CELLS == {"layer_norm_lstm": (4, 9, 3, True),
                                "layer_norm_gru": (3, 6, 1, False)}


@pytest.mark.parametrize("cell", ALL_CELLS + list(LAYER_NORM_CELLS))
def test_ops_registered_for_each_device(cell):
    keys = ["CPU"] + (["CUDA"] if build_info()["cuda"] == "1" else [])
    for direction in ("forward", "backward"):
        for key in keys:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(
                f"fastrnn::{cell}_{direction}", key), (cell, direction, key)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_schema_and_workspace_follow_the_table(cell):
    gates, saved, has_cell = cells.CELLS[cell]
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    assert ("c0" in [a.name for a in forward._schema.arguments]) == has_cell
    assert ("grad_c_n" in [a.name for a in backward._schema.arguments]) == has_cell
    assert len(forward._schema.returns) == 3 + has_cell
    assert len(backward._schema.returns) == 4 + has_cell
    H, batch_sizes = 3, torch.tensor([2, 1])
    args = [torch.randn(3, gates * H), batch_sizes, torch.randn(gates * H, H), None,
            torch.randn(2, H)] + ([torch.randn(2, H)] if has_cell else [])
    workspace = forward(*args, False, True)[-1]
    assert workspace.shape == ((3 if saved else 0), saved * H)

