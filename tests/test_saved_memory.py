"""fastrnn keeps no more memory for backward than torch.nn (benchmarks/saved_memory.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import saved_memory  # noqa: E402


@pytest.mark.parametrize("cell", list(saved_memory.CLASSES))
@pytest.mark.parametrize("shape,layout", [("agnews", "1x1"), ("agnews", "2x2"),
                                          ("hidden512", "1x1")])
def test_saved_for_backward_not_more_than_torch(cell, shape, layout):
    row = saved_memory.measure(cell, shape, layout)

    def total_bytes(key):
        return round(row[key] * row["tokens"])

    assert total_bytes("fastrnn_activations_per_token") <= \
        total_bytes("torch_activations_per_token"), row
    # The only extra storages in the total exist anyway: the input's own batch_sizes (8
    # bytes a step), which fastrnn's one autograd node saves and torch.nn's per-step graph
    # does not, and the bias parameters (saved for double backward's recomputation).
    assert total_bytes("fastrnn_total_per_token") <= \
        total_bytes("torch_total_per_token") + 8 * row["steps"] + row["bias_bytes"], row
    if cell != "rnn_tanh":  # LSTM/GRU save fewer values per token than torch.nn
        assert row["fastrnn_activations_per_token"] < 0.9 * row["torch_activations_per_token"]
