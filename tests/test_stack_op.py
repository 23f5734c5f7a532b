"""The stack op (``torch.ops.fastrnn.rnn_stack``, csrc/stack.cpp: a module's layers, zero
states and the states' batch order in one C++ op, the modules' eager path)
against fastrnn.functional.rnn_stack, the Python path of compiled, traced and transformed calls
(whose parity with torch.nn the other tests prove); when the modules take it; bad input."""
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
from fastrnn import functional, ops

MODES = list(functional.MODE_TO_CELL)
LENGTHS = torch.tensor([2, 4, 1, 3])  # unsorted: the packed rows are permuted


def module_for(mode, **kwargs):
    cls = fastrnn.LSTM if mode == "LSTM" else fastrnn.GRU if mode == "GRU" else fastrnn.RNN
    if mode.startswith("RNN"):
        kwargs["nonlinearity"] = mode[4:].lower()
    return cls(3, 2, dtype=torch.float64, **kwargs)


def packed_input(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 3, generator=gen, dtype=torch.float64)
    return pack_padded_sequence(x.requires_grad_(), LENGTHS, batch_first=True,
                                enforce_sorted=False)


def by_functional(module, packed, hx, dropout_seed):
    """functional.rnn_stack with the module's weights, the states permuted as torch.nn does."""
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    directions = 2 if module.bidirectional else 1
    shape = (module.num_layers * directions, len(LENGTHS), module.hidden_size)
    h0, c0 = hx if hx is not None else (torch.zeros(shape, dtype=data.dtype),) * 2
    h0, c0 = h0.index_select(1, sorted_indices), c0.index_select(1, sorted_indices)
    torch.manual_seed(dropout_seed)
    output, h_n, c_n = functional.rnn_stack(
        module.mode, data, batch_sizes, h0, c0 if module.mode == "LSTM" else None,
        module._flat_weights, module.bias, module.num_layers, module.dropout, module.training,
        module.bidirectional)
    states = [h_n] + ([c_n] if c_n is not None else [])
    return [output] + [s.index_select(1, unsorted_indices) for s in states]


def by_stack_op(module, packed, hx, dropout_seed):
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    h0 = c0 = None
    if hx is not None:
        h0 = hx[0].index_select(1, sorted_indices)
        c0 = hx[1].index_select(1, sorted_indices) if module.mode == "LSTM" else None
    torch.manual_seed(dropout_seed)
    return ops.rnn_stack(functional.MODE_TO_CELL[module.mode], data, batch_sizes, h0, c0,
                         unsorted_indices, module._flat_weights, module.bias, module.num_layers,
                         module.dropout, module.training, module.bidirectional)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("given_state", [False, True])
def test_matches_functional_rnn_stack(mode, layers, bidirectional, bias, given_state):
    module = module_for(mode, num_layers=layers, bidirectional=bidirectional, bias=bias,
                        dropout=0.3 if layers > 1 else 0.0)
    packed = packed_input()
    hx = None
    if given_state:
        gen = torch.Generator().manual_seed(1)
        shape = (layers * (2 if bidirectional else 1), len(LENGTHS), 2)
        hx = [torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_()
              for _ in range(2)]
    got = by_stack_op(module, packed, hx, dropout_seed=5)
    want = by_functional(module, packed, hx, dropout_seed=5)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    leaves = [packed.data, *module.parameters()] + (hx if given_state else [])
    leaves = [t for t in leaves if t.requires_grad]
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in want]
    got_grads = torch.autograd.grad(got, leaves, weights, allow_unused=True)
    want_grads = torch.autograd.grad(want, leaves, weights, allow_unused=True)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradcheck_and_gradgradcheck(mode):
    module = module_for(mode, num_layers=2, bidirectional=True)
    packed = packed_input()
    data, batch_sizes, _, unsorted_indices = packed
    weights = list(module._flat_weights)

    def fn(data, *weights):
        return tuple(ops.rnn_stack(functional.MODE_TO_CELL[mode], data, batch_sizes, None, None,
                                   unsorted_indices, list(weights), True, 2, 0.0, False, True))

    inputs = (data.detach().requires_grad_(), *weights)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def count_stack_op_calls(monkeypatch):
    calls = []
    original = ops.rnn_stack

    def counting(*args):
        calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(ops, "rnn_stack", counting)
    return calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_eager_calls_take_it(mode, layout, monkeypatch):
    calls = count_stack_op_calls(monkeypatch)
    module = module_for(mode)

    def batch():
        return packed_input() if layout == "packed" else torch.randn(4, 2, 3, dtype=torch.float64)

    module(batch())
    with torch.no_grad():
        module(batch())
    with torch.inference_mode():
        module(batch())
    assert calls == [functional.MODE_TO_CELL[mode]] * 3


@pytest.mark.parametrize("case", ["zoneout", "proj_size", "layer_norm", "torch.func",
                                  "forward_ad"])
def test_other_calls_keep_the_python_path(case, monkeypatch):
    calls = count_stack_op_calls(monkeypatch)
    module = module_for("LSTM", **({"zoneout": 0.2} if case == "zoneout" else
                                   {"proj_size": 1} if case == "proj_size" else {}))
    if case == "layer_norm":
        module = fastrnn.LayerNormLSTM(3, 2, dtype=torch.float64)
    packed = packed_input()
    if case == "torch.func":
        torch.func.grad(lambda data: module(PackedSequence(data, *packed[1:]))[0].data.sum())(
            packed.data.detach())
    elif case == "forward_ad":
        with torch.autograd.forward_ad.dual_level():
            data = torch.autograd.forward_ad.make_dual(packed.data.detach(),
                                                       torch.ones_like(packed.data))
            module(PackedSequence(data, *packed[1:]))
    else:
        module(packed)
    assert calls == []


def test_inference_results_do_not_require_grad():
    module = module_for("GRU")
    with torch.no_grad():
        output, h_n = module(packed_input())
    assert not output.data.requires_grad and not h_n.requires_grad


def stack_args(**changes):
    module = module_for("LSTM")
    packed = packed_input()
    args = dict(cell="lstm", data=packed.data, batch_sizes=packed.batch_sizes, h0=None, c0=None,
                unsorted_indices=packed.unsorted_indices, weights=list(module._flat_weights),
                has_bias=True, num_layers=1, dropout=0.0, train=False, bidirectional=False)
    args.update(changes)
    return list(args.values())


@pytest.mark.parametrize("changes,message", [
    (dict(cell="lstmx"), "rnn_stack"),
    (dict(num_layers=0), "num_layers must be at least 1"),
    (dict(num_layers=2), r"weights must hold 8 tensors \(weight_ih, weight_hh, bias_ih, "
                         r"bias_hh per layer and direction\), got 4"),
    (dict(batch_sizes=torch.tensor([4, 3, 2, 1], dtype=torch.int32)),
     "batch_sizes must be a 1-D int64 tensor on the CPU"),
    (dict(h0=torch.zeros(1, 4, 2, dtype=torch.float64)), "c0 must be given with h0 for lstm"),
    (dict(h0=torch.zeros(2, 4, 2, dtype=torch.float64), c0=torch.zeros(2, 4, 2)),
     r"h0 must have shape \[num_layers \* num_directions=1, batch, hidden_size\], "
     r"got \[2, 4, 2\]"),
    (dict(h0=torch.zeros(1, 4, 2, dtype=torch.float64), c0=torch.zeros(4, 2)),
     r"c0 must have shape \[num_layers \* num_directions=1, batch, hidden_size\], "
     r"got \[4, 2\]"),
])
def test_bad_input(changes, message):
    with pytest.raises(RuntimeError, match=message):
        ops.rnn_stack(*stack_args(**changes))
