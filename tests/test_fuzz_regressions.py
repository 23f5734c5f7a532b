"""Minimal cases found by the fuzzers (tests/test_fuzz_*.py), kept as regular tests.

A differential case that fails shrinks to a dict for fuzz_cases.check_case: add it to
PARITY_CASES. Bad-input findings get a test of their own.
"""
import pytest
import torch

import fastrnn
from fuzz_cases import check_case

# Smallest shapes of each kind (what hypothesis shrinks towards), kept as a fixed floor.
PARITY_CASES = [
    dict(cell="lstm", layers=1, bidirectional=False, bias=False, batch_first=False, proj_size=0,
         input_size=1, hidden=1, dtype="float32", kind="packed", lengths=[1],
         enforce_sorted=False, with_hx=False, seed=0),
    dict(cell="gru", layers=2, bidirectional=True, bias=True, batch_first=True, proj_size=0,
         input_size=1, hidden=1, dtype="float64", kind="sequence", lengths=[1, 3, 1],
         enforce_sorted=False, with_hx=True, seed=0),
    dict(cell="rnn_relu", layers=3, bidirectional=True, bias=False, batch_first=True,
         proj_size=0, input_size=2, hidden=3, dtype="float32", kind="unbatched", lengths=[1],
         enforce_sorted=False, with_hx=True, seed=0),
    dict(cell="lstm", layers=2, bidirectional=True, bias=True, batch_first=False, proj_size=1,
         input_size=3, hidden=2, dtype="float64", kind="packed", lengths=[2, 2, 2],
         enforce_sorted=True, with_hx=True, seed=0),
]


@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: f"{c['cell']}-{c['kind']}")
def test_parity_case(case):
    check_case(case)


@pytest.mark.parametrize("which", ["h0", "input_proj", "bias_hh"])
def test_one_meta_tensor_among_cpu_ones_is_an_error(which):
    # Found by bad-input fuzzing: the Meta key won the dispatch, so the call reached the fake
    # kernel, which returned uninitialised CPU tensors without an error.
    args = dict(input_proj=torch.randn(3, 4), batch_sizes=torch.tensor([2, 1]),
                weight_hh=torch.randn(4, 4), bias_hh=torch.randn(4), h0=torch.randn(2, 4))
    args[which] = args[which].to("meta")
    with pytest.raises(RuntimeError, match=f"fastrnn: {which} must be on cpu"):
        torch.ops.fastrnn.rnn_tanh_forward(*args.values(), False)


def test_one_meta_tensor_in_backward_is_an_error():
    bs = torch.tensor([2, 1])
    w, h0, c0 = torch.randn(8, 2), torch.randn(2, 2), torch.randn(2, 2)
    out, h_n, c_n, ws = torch.ops.fastrnn.lstm_forward(torch.randn(3, 8), bs, w, None, h0, c0,
                                                       False)
    with pytest.raises(RuntimeError, match="fastrnn: workspace must be on cpu"):
        torch.ops.fastrnn.lstm_backward(torch.randn(3, 2), h_n, c_n, bs, w, h0, c0, out,
                                        ws.to("meta"), False)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_zero_hidden_size_is_an_error(cell):
    # Found by the sanitizer job: hidden_size 0 passed the shape checks and the kernel
    # memcpy'd from an empty tensor's null data pointer (UBSan: null pointer argument).
    gates = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[cell]
    states = [torch.zeros(2, 0)] * (2 if cell == "lstm" else 1)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward")
    with pytest.raises(RuntimeError, match="hidden_size .* must be at least 1"):
        forward(torch.zeros(3, 0), torch.tensor([2, 1]), torch.zeros(gates * 0, 0), None,
                *states, False)


@pytest.mark.parametrize("batch_first", [False, True])
def test_padded_input_with_zero_steps_raises_like_torch(batch_first):
    ref, ours = torch.nn.GRU(3, 4, batch_first=batch_first), fastrnn.GRU(3, 4,
                                                                         batch_first=batch_first)
    x = torch.zeros(2, 0, 3) if batch_first else torch.zeros(0, 2, 3)
    for module in (ref, ours):
        with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
            module(x)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_padded_input_with_empty_batch_matches_torch(cell):
    cls = {"lstm": (torch.nn.LSTM, fastrnn.LSTM), "gru": (torch.nn.GRU, fastrnn.GRU),
           "rnn_relu": (torch.nn.RNN, fastrnn.RNN)}[cell]
    kwargs = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    ref = cls[0](3, 4, num_layers=2, bidirectional=True, **kwargs)
    ours = cls[1](3, 4, num_layers=2, bidirectional=True, **kwargs)
    ours.load_state_dict(ref.state_dict())
    x = torch.zeros(5, 0, 3)
    want, got = ref(x), ours(x)
    flat = [want[0]] + list(want[1] if cell == "lstm" else [want[1]])
    flat_got = [got[0]] + list(got[1] if cell == "lstm" else [got[1]])
    for g, w in zip(flat_got, flat):
        assert g.shape == w.shape


def test_backward_workspace_of_the_wrong_dtype_is_a_clear_error():
    # Was "expected scalar type Float but found Double", from deep inside the kernel.
    bs = torch.tensor([2, 1])
    w, h0 = torch.randn(6, 2), torch.randn(2, 2)
    out, h_n, ws = torch.ops.fastrnn.gru_forward(torch.randn(3, 6), bs, w, None, h0, False)
    with pytest.raises(RuntimeError, match="fastrnn: workspace must have dtype Float"):
        torch.ops.fastrnn.gru_backward(torch.randn(3, 2), h_n, bs, w, h0, out, ws.double(), False)


def test_batch_sizes_none_is_a_clear_error():
    # Was "tensor does not have a device" (None reaches the kernel as an undefined tensor).
    with pytest.raises(RuntimeError, match="fastrnn: batch_sizes must be .* got None"):
        torch.ops.fastrnn.rnn_tanh_forward(torch.randn(3, 1), None, torch.randn(1, 1), None,
                                           torch.randn(2, 1), False)


@pytest.mark.parametrize("half", ["forward", "backward"])
def test_batch_sizes_none_with_a_meta_tensor_is_a_clear_error(half):
    # Found by the random fuzz run of the sanitizer job: a meta tensor sends the call to
    # the fake kernel, which read batch_sizes.device of None (AttributeError).
    bs, w, h0 = torch.tensor([2, 1]), torch.randn(8, 2), torch.randn(2, 2)
    if half == "forward":
        with pytest.raises(RuntimeError, match="fastrnn: batch_sizes must be .* got NoneType"):
            torch.ops.fastrnn.lstm_forward(torch.randn(3, 8, device="meta"), None, w, None, h0,
                                           h0, False)
        return
    out, h_n, c_n, ws = torch.ops.fastrnn.lstm_forward(torch.randn(3, 8), bs, w, None, h0, h0,
                                                       False)
    with pytest.raises(RuntimeError, match="fastrnn: batch_sizes must be .* got NoneType"):
        torch.ops.fastrnn.lstm_backward(torch.randn(3, 2, device="meta"), h_n, c_n, None, w, h0,
                                        h0, out, ws, False)


def test_none_weight_with_a_meta_tensor_is_a_clear_error():
    # Found by a longer random fuzz run: same path, weight_hh=None (AttributeError before).
    h0 = torch.randn(2, 1)
    with pytest.raises(RuntimeError, match="fastrnn: weight_hh must be a tensor, got NoneType"):
        torch.ops.fastrnn.lstm_forward(torch.randn(3, 4, device="meta"), torch.tensor([2, 1]),
                                       None, None, h0, h0, False)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_packed_sequence_with_too_many_sorted_indices_and_hx_is_a_clear_error(cell):
    # Found by bad-input fuzzing: torch.nn.LSTM permutes hx by sorted_indices of the wrong
    # length and runs on (GRU/RNN then fail their hx size check); fastrnn raised torch's
    # hx-size message, which names the hx rather than the PackedSequence.
    module = getattr(fastrnn, cell)(4, 3, num_layers=2)
    packed = torch.nn.utils.rnn.PackedSequence(torch.randn(1, 4), torch.tensor([1]),
                                               torch.tensor([0, 0]), torch.tensor([0]))
    h0 = torch.randn(2, 1, 3)
    with pytest.raises(RuntimeError, match=r"sorted_indices must have shape \[batch_sizes\[0\]\] "
                                           r"= \[1\] .*got \[2\]"):
        module(packed, (h0, h0) if cell == "LSTM" else h0)
    module(packed)  # without hx the indices are not used: torch.nn runs too
