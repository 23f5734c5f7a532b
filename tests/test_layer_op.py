"""The layer ops (``torch.ops.fastrnn.<cell>_layer``: input projection + recurrence, autograd
in C++, csrc/layer.cpp) against the input projection followed by the cell's op, whose parity
with torch.nn the other tests prove; their double backward, dispatch paths and bad input."""
import re

import pytest
import torch

import fastrnn
from fastrnn import ops
from fastrnn.ops import CELLS
from helpers import TOL

ALL_CELLS = list(CELLS)
BATCH_SIZES = (4, 3, 3, 1)  # a packed batch: rows of lengths 4, 3, 3, 1


def layer_inputs(cell, dtype=torch.float64, bias=True, input_size=3, hidden=2, seed=0,
                 zoneout=False):
    """(input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0, zoneout), every
    float tensor a leaf that requires grad (c0 None without a cell state)."""
    gen = torch.Generator().manual_seed(seed)
    gates, _, has_cell = CELLS[cell]
    tokens, batch = sum(BATCH_SIZES), BATCH_SIZES[0]

    def leaf(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.7).to(
            dtype).requires_grad_()

    mask = None
    if zoneout:
        width = (2 if has_cell else 1) * hidden
        mask = torch.bernoulli(torch.full((tokens, width), 0.4, dtype=torch.float64),
                               generator=gen).to(dtype)
    return [leaf(tokens, input_size), torch.tensor(BATCH_SIZES),
            leaf(gates * hidden, input_size), leaf(gates * hidden) if bias else None,
            leaf(gates * hidden, hidden), leaf(gates * hidden) if bias else None,
            leaf(batch, hidden), leaf(batch, hidden) if has_cell else None, mask]


def by_cell_op(cell, input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0,
               reverse, zoneout):
    """The same layer as the input projection and the cell's op (the non-eager path)."""
    projection = (input, weight_ih, bias_ih)
    proj = ops.input_projection(*projection)
    recompute = ops.Recompute(ops.input_projection, projection)
    if CELLS[cell][2]:
        return ops.lstm(proj, batch_sizes, weight_hh, bias_hh, h0, c0, reverse, recompute,
                        zoneout)
    output, h_n = getattr(ops, cell)(proj, batch_sizes, weight_hh, bias_hh, h0, reverse,
                                      recompute, zoneout)
    return output, h_n, None


def weighted_sum(results, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return sum((r * torch.randn(r.shape, generator=gen, dtype=r.dtype)).sum()
               for r in results if r is not None)


def differentiable(inputs):
    return [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_the_cell_op(cell, reverse, bias, dtype):
    inputs = layer_inputs(cell, dtype, bias)
    got = ops.layer(cell, *inputs[:8], reverse, inputs[8])
    want = by_cell_op(cell, *inputs[:8], reverse, inputs[8])
    for g, w in zip(got, want):
        if w is not None:
            torch.testing.assert_close(g, w, **TOL[dtype])
    leaves = differentiable(inputs)
    grads = torch.autograd.grad(weighted_sum(got), leaves)
    want_grads = torch.autograd.grad(weighted_sum(want), leaves)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, **TOL[dtype])


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_matches_the_cell_op_with_zoneout(cell):
    inputs = layer_inputs(cell, zoneout=True)
    got = ops.layer(cell, *inputs[:8], False, inputs[8])
    want = by_cell_op(cell, *inputs[:8], False, inputs[8])
    leaves = differentiable(inputs)
    for g, w in zip(torch.autograd.grad(weighted_sum(got), leaves),
                    torch.autograd.grad(weighted_sum(want), leaves)):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_and_gradgradcheck(cell, reverse):
    # gradgradcheck differentiates the C++ backward with create_graph=True: the layer is
    # recomputed in plain ops (fastrnn::layer_grads_by_recomputation).
    inputs = layer_inputs(cell)
    leaves = differentiable(inputs)

    def fn(*leaves_):
        it = iter(leaves_)
        args = [next(it) if isinstance(t, torch.Tensor) and t.requires_grad else t
                for t in inputs]
        return tuple(r for r in ops.layer(cell, *args[:8], reverse, args[8]) if r is not None)

    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gradient_of_only_some_inputs(cell):
    # Only the input and h0 require grad (frozen weights): the node computes no weight
    # gradient, and what it returns matches the full computation.
    full = layer_inputs(cell)
    want = torch.autograd.grad(weighted_sum(ops.layer(cell, *full[:8], False)),
                               [full[0], full[6]])
    frozen = [t.detach() if isinstance(t, torch.Tensor) else t for t in full]
    frozen[0].requires_grad_()
    frozen[6].requires_grad_()
    got = torch.autograd.grad(weighted_sum(ops.layer(cell, *frozen[:8], False)),
                              [frozen[0], frozen[6]])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_output_may_be_changed_in_place(cell):
    # Like torch.nn's, the output is not saved for backward: out += 1 before backward is fine.
    inputs = layer_inputs(cell)
    output, h_n, c_n = ops.layer(cell, *inputs[:8], False)
    want = torch.autograd.grad(weighted_sum([output, h_n, c_n]), inputs[0], retain_graph=True)
    output.add_(1.0)
    got = torch.autograd.grad(weighted_sum([output, h_n, c_n]), inputs[0])
    torch.testing.assert_close(got, want, **TOL[torch.float64])


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_without_autograd(cell, mode):
    # inference_mode dispatches below the Autograd key (the CompositeExplicitAutograd kernel).
    inputs = layer_inputs(cell)
    want = ops.layer(cell, *inputs[:8], True)
    with getattr(torch, mode)():
        got = ops.layer(cell, *inputs[:8], True)
    for g, w in zip(got, want):
        if w is not None:
            assert not g.requires_grad
            torch.testing.assert_close(g, w.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_opcheck(cell):
    inputs = layer_inputs(cell, torch.float32)
    has_cell = CELLS[cell][2]
    args = (*inputs[:7], *((inputs[7],) if has_cell else ()), False)
    # Not test_aot_dispatch_dynamic: the op's C++ autograd reads concrete sizes and
    # batch_sizes' values, which AOTAutograd's symbolic tracing cannot give ("Cannot call
    # numel() on tensor with symbolic sizes"). The op serves eager calls only; torch.compile
    # and torch.export see the cell's ops (functional.rnn_stack), which pass it.
    torch.library.opcheck(getattr(torch.ops.fastrnn, f"{cell}_layer").default, args,
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))


def test_module_takes_the_layer_op_in_eager_mode():
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "fastrnn":
                seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    module = fastrnn.LSTM(3, 2)
    with Record():
        module(torch.randn(4, 2, 3))
    # Below its C++ autograd, the layer op runs the cell's forward op.
    assert seen == ["lstm_forward.default"]
    with Record():
        seen.clear()
        with torch.inference_mode():
            module(torch.randn(4, 2, 3))
    # Below autograd the mode sees the op the module calls, the stack op (csrc/stack.cpp), and
    # not what it runs, as for any op.
    assert seen == ["rnn_stack.default"]


def bad_layer_cases():
    x = torch.randn(sum(BATCH_SIZES), 3)
    w_ih, w_hh, b = torch.randn(8, 3), torch.randn(8, 2), torch.randn(8)
    h0 = torch.zeros(4, 2)
    bs = torch.tensor(BATCH_SIZES)
    good = [x, bs, w_ih, b, w_hh, b, h0, h0]

    def case(name, index, value, message):
        args = list(good)
        args[index] = value
        return name, args, message

    return [
        case("input 3-D", 0, torch.randn(11, 3, 1), "input must have shape [total_tokens, input"),
        case("input float64", 0, x.double(),
             "input must have dtype Float (that of weight_hh), got Double"),
        case("weight_ih columns", 2, torch.randn(8, 4), "weight_ih must have shape [8, 3]"),
        case("weight_ih rows", 2, torch.randn(4, 3), "weight_ih must have shape [8, 3]"),
        case("bias_ih size", 3, torch.randn(5), "bias_ih must have shape [8]"),
        case("weight_hh shape", 4, torch.randn(6, 2), "weight_hh of lstm must have shape [4*"),
        case("weight_hh int", 4, torch.ones(8, 2, dtype=torch.int64), "weight_hh must be float"),
        case("input tokens", 0, torch.randn(10, 3), "batch_sizes sum to 11 but input has 10"),
        case("h0 batch", 6, torch.zeros(3, 2), "batch_sizes[0] = 4 is out of range: every entry "
             "must be in [1, batch] where batch = h0.size(0) = 3"),
    ]


@pytest.mark.parametrize("name,args,message", bad_layer_cases(),
                         ids=[c[0] for c in bad_layer_cases()])
@pytest.mark.parametrize("grad", [True, False])
def test_bad_input_is_a_clear_error(name, args, message, grad):
    args = [a.clone().requires_grad_(grad and a.is_floating_point()) for a in args]
    with pytest.raises(RuntimeError, match=re.escape(message)):
        torch.ops.fastrnn.lstm_layer(*args, False)


@pytest.mark.parametrize("indices", [[2, 0, 3, 1], [1, 1, 0, 3]], ids=["permutation", "repeats"])
@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_permute_batch_is_index_select(indices, mode):
    # A permutation's backward is the gather by its inverse; other indices keep
    # index_select's own backward. Double backward works either way.
    indices = torch.tensor(indices)
    states = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    want = states.index_select(1, indices)
    context = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
               "inference_mode": torch.inference_mode}[mode]
    with context():
        got = ops.permute_batch(states, indices)
    torch.testing.assert_close(got, want.detach() if mode != "grad" else want, rtol=0, atol=0)
    if mode == "grad":
        assert torch.autograd.gradcheck(lambda s: ops.permute_batch(s, indices), states)
        assert torch.autograd.gradgradcheck(lambda s: ops.permute_batch(s, indices), states)
    torch.library.opcheck(torch.ops.fastrnn.permute_batch.default, (states, indices),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))


def test_permute_batch_bad_states():
    with pytest.raises(RuntimeError, match=re.escape("permute_batch: states must have shape "
                                                     "[layers * directions, batch, hidden_size]")):
        ops.permute_batch(torch.randn(4, 3), torch.tensor([1, 0, 2, 3]))
