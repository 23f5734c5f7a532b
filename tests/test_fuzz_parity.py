"""Differential fuzzing: random configurations of fastrnn.LSTM/GRU/RNN against torch.nn.

Hypothesis draws the cell type, layers, directions, sizes (1 and odd ones included), dtype,
batch_first, bias, proj_size, the input kind (PackedSequence from padded rows or from a
list of sequences, sorted or not, padded tensor, unbatched tensor), random lengths >= 1
(batch of 1, all equal, ...) and whether an initial state is given; outputs, states and
the gradients of the input, the initial state and every parameter must match torch.nn
(see fuzz_cases.check_case); a smaller run checks second derivatives (double backward) the
same way, and another fastrnn's zoneout against the plain-ops path fed the same masks. The
default "ci" profile runs a fixed set of examples; see
tests/conftest.py for the longer run. A failure shrinks to a minimal case dict: keep it
in tests/test_fuzz_regressions.py.
"""
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from fuzz_cases import check_case, check_second_order  # noqa: E402

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


@st.composite
def cases(draw):
    cell = draw(st.sampled_from(CELLS))
    hidden = draw(st.integers(1, 9))
    proj = 0
    if cell == "lstm" and hidden > 1 and draw(st.booleans()):
        proj = draw(st.integers(1, hidden - 1))
    kind = draw(st.sampled_from(["packed", "sequence", "padded", "unbatched"]))
    batch = 1 if kind == "unbatched" else draw(st.integers(1, 5))
    lengths = draw(st.lists(st.integers(1, 7), min_size=batch, max_size=batch))
    if kind in ("packed", "sequence") and draw(st.booleans()):
        lengths = sorted(lengths, reverse=True)
    return dict(
        cell=cell,
        layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        proj_size=proj,
        input_size=draw(st.integers(1, 6)),
        hidden=hidden,
        dtype=draw(st.sampled_from(["float32", "float64"])),
        kind=kind,
        lengths=lengths,
        enforce_sorted=draw(st.booleans()),
        with_hx=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@given(cases())
def test_fuzz_module_parity(case):
    check_case(case)


@settings(max_examples=60)
@given(cases())
def test_fuzz_double_backward_parity(case):
    # create_graph=True recomputes each layer in plain ops (fastrnn/reference.py)
    check_second_order(case)


@settings(max_examples=40)
@given(cases(), st.sampled_from([0.1, 0.5, 0.9]))
def test_fuzz_zoneout_parity(case, p):
    # fastrnn's zoneout (no torch.nn counterpart): the fused module against its plain-ops
    # self fed the same masks (fuzz_cases.check_case)
    check_case(dict(case, proj_size=0, zoneout=p))


@st.composite
def wide_cases(draw):
    """Fewer knobs, larger hidden sizes (the blocked small-GEMM tails and the BLAS path)."""
    cell = draw(st.sampled_from(CELLS))
    batch = draw(st.integers(1, 9))
    return dict(
        cell=cell, layers=1, bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        batch_first=False, proj_size=0, input_size=draw(st.integers(1, 8)),
        hidden=draw(st.sampled_from([15, 16, 17, 31, 33, 65, 129, 260])),
        dtype=draw(st.sampled_from(["float32", "float64"])), kind="packed",
        lengths=draw(st.lists(st.integers(1, 4), min_size=batch, max_size=batch)),
        enforce_sorted=False, with_hx=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)),
    )


@given(wide_cases())
def test_fuzz_module_parity_wide(case):
    check_case(case)
