"""The LayerNorm cells' fused ops: typed Python functions, fake kernels and autograd.

``torch.ops.fastrnn.layer_norm_lstm_forward`` / ``layer_norm_gru_forward`` (and their
``_backward``) run one layer in one direction over a packed sequence, like the plain
cells' ops (fastrnn.ops), with layer normalisation of the recurrent projection (gain
``ln_hh_weight``, bias ``ln_hh_bias``) and, for the LSTM, of the cell state before its tanh
(``ln_c_weight``, ``ln_c_bias``). ``input_proj`` is the input projection after its own
layer norm (``fastrnn.layer_norm`` applies it to every token at once). Math:
csrc/cell_math.h; kernels: csrc/cpu/layer_norm_cpu.cpp.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ._extension import _C  # noqa: F401  (loads the library: registers torch.ops.fastrnn.*)
from . import _compat, ops

__all__ = ["layer_norm_lstm", "layer_norm_gru", "LAYER_NORM_CELLS"]


def _parse(table: str) -> Dict[str, Tuple[int, int, int, bool]]:
    cells = {}
    for entry in table.split(";"):
        name, gates, saved, stats, has_cell = entry.split(":")
        cells[name] = (int(gates), int(saved), int(stats), has_cell == "1")
    return cells


# cell -> (gates G, saved values per unit S, row statistics per token, has a cell state),
# from each cell's traits in csrc/cell_math.h. A workspace row holds S*H + stats values.
LAYER_NORM_CELLS = _parse(torch.ops.fastrnn.layer_norm_cell_table())

_FORWARD_OPS = {c: getattr(torch.ops.fastrnn, f"{c}_forward").default for c in LAYER_NORM_CELLS}
_BACKWARD_OPS = {c: getattr(torch.ops.fastrnn, f"{c}_backward").default
                 for c in LAYER_NORM_CELLS}


def _call(cell: str, args: tuple) -> tuple:
    """Runs ``<cell>_forward`` on ``args`` (up to ``reverse``), as fastrnn.ops._call: in eager
    mode through a plain autograd.Function with the registered formula (torch.library's
    Python autograd wrapper costs ~35 us a call each way), or below the Autograd key when
    no backward can follow; traced or compiled calls see the registered op."""
    op = _FORWARD_OPS[cell]
    keep = ops._backward_may_follow(*args[:-1])
    if not ops._eager():
        return op(*args, keep)
    if keep:
        return _AUTOGRAD[cell].apply(*args, keep)
    with _compat.below_autograd():
        return op(*args, keep)


def layer_norm_lstm(input_proj: Tensor, batch_sizes: Tensor, weight_hh: Tensor,
                    ln_hh_weight: Tensor, ln_hh_bias: Optional[Tensor], ln_c_weight: Tensor,
                    ln_c_bias: Optional[Tensor], h0: Tensor, c0: Tensor,
                    reverse: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """LayerNorm LSTM recurrence over a packed sequence: ``(output, h_n, c_n)``."""
    args = (input_proj, batch_sizes, weight_hh, ln_hh_weight, ln_hh_bias, ln_c_weight,
            ln_c_bias, h0, c0, reverse)
    output, h_n, c_n, _ = _call("layer_norm_lstm", args)
    return output, h_n, c_n


def layer_norm_gru(input_proj: Tensor, batch_sizes: Tensor, weight_hh: Tensor,
                   ln_hh_weight: Tensor, ln_hh_bias: Optional[Tensor], h0: Tensor,
                   reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """LayerNorm GRU recurrence over a packed sequence: ``(output, h_n)``."""
    args = (input_proj, batch_sizes, weight_hh, ln_hh_weight, ln_hh_bias, h0, reverse)
    output, h_n, _ = _call("layer_norm_gru", args)
    return output, h_n


def _forward_fake(cell: str, *args):
    gates, saved, stats, has_cell = LAYER_NORM_CELLS[cell]
    a = ops._arguments(_FORWARD_OPS[cell], args)
    input_proj, weight_hh, h0 = a["input_proj"], a["weight_hh"], a["h0"]
    required = {"input_proj": input_proj, "weight_hh": weight_hh, "h0": h0,
                "ln_hh_weight": a["ln_hh_weight"]}
    if has_cell:
        required.update(c0=a["c0"], ln_c_weight=a["ln_c_weight"])
    ops._check_defined(**required)
    ops._check_batch_sizes(a["batch_sizes"], input_proj)
    # One meta tensor among real ones sends the call here: refuse mixed devices rather than
    # return uninitialised results (as fastrnn.ops' fakes).
    others = {k: v for k, v in a.items() if k not in ("batch_sizes", "weight_hh", "reverse",
                                                      "keep_workspace")}
    ops._check_same_device(weight_hh, **others)
    torch._check(
        weight_hh.dim() == 2 and weight_hh.shape[0] == gates * weight_hh.shape[1],
        lambda: f"fastrnn: weight_hh of {cell} must have shape [{gates}*hidden_size, "
        f"hidden_size], got {list(weight_hh.shape)}")
    hidden = weight_hh.shape[1]
    torch._check(
        input_proj.dim() == 2 and input_proj.shape[1] == gates * hidden,
        lambda: f"fastrnn: input_proj must have shape [total_tokens, {gates * hidden}], "
        f"got {list(input_proj.shape)}")
    tokens = input_proj.shape[0]
    workspace = input_proj.new_empty(
        (tokens if a["keep_workspace"] else 0, saved * hidden + stats),
        dtype=ops._workspace_dtype(input_proj.dtype))
    states = [torch.empty_like(h0) for _ in range(2 if has_cell else 1)]
    return (input_proj.new_empty((tokens, hidden)), *states, workspace)


def _backward_fake(cell: str, *args):
    has_cell = LAYER_NORM_CELLS[cell][3]
    a = ops._arguments(_BACKWARD_OPS[cell], args)
    weight_hh, h0 = a["weight_hh"], a["h0"]
    tensors = {k: v for k, v in a.items() if k not in ("batch_sizes", "reverse")}
    ops._check_defined(**{k: v for k, v in tensors.items() if not k.startswith("ln_")
                          or k.endswith("weight")})
    ops._check_batch_sizes(a["batch_sizes"], a["grad_output"])
    del tensors["weight_hh"]
    ops._check_same_device(weight_hh, **tensors)
    grads = [weight_hh.new_empty((a["grad_output"].shape[0], weight_hh.shape[0])),
             torch.empty_like(weight_hh), torch.empty_like(a["ln_hh_weight"]),
             torch.empty_like(a["ln_hh_weight"])]
    if has_cell:
        grads += [torch.empty_like(a["ln_c_weight"]), torch.empty_like(a["ln_c_weight"])]
    grads.append(torch.empty_like(h0))
    if has_cell:
        grads.append(torch.empty_like(h0))
    return tuple(grads)


def _setup_context(cell: str, ctx, inputs: tuple, output: tuple) -> None:
    ctx.set_materialize_grads(False)
    has_cell = LAYER_NORM_CELLS[cell][3]
    *tensors, ctx.reverse, keep_workspace = inputs
    torch._check(keep_workspace, lambda: f"fastrnn: {cell}_forward with keep_workspace=False "
                 "cannot be differentiated (its inputs require grad): pass True")
    # (batch_sizes, weight_hh, ln_hh_weight, ln_hh_bias, [ln_c_weight, ln_c_bias,] h0, [c0])
    ctx.optional = [t is None for t in tensors[1:]]
    ctx.has_cell = has_cell
    ctx.save_for_backward(*tensors[1:], output[0], output[-1])


def _backward(cell: str, ctx, *grads):
    """Gradients of (input_proj, batch_sizes, weight_hh, ln_hh_weight, ln_hh_bias,
    [ln_c_weight, ln_c_bias,] h0, [c0,] reverse, keep_workspace)."""
    *inputs, out, workspace = ctx.saved_tensors
    states = inputs[-2:] if ctx.has_cell else inputs[-1:]
    grad_output = torch.zeros_like(out) if grads[0] is None else grads[0].contiguous()
    state_grads = [torch.zeros_like(s) if g is None else g.contiguous()
                   for s, g in zip(states, grads[1:])]
    args = (grad_output, *state_grads, *inputs, out, workspace, ctx.reverse)
    if torch.is_grad_enabled():  # create_graph=True: the backward op's autograd refuses
        results = _BACKWARD_OPS[cell](*args)
    else:
        with _compat.below_autograd():
            results = _BACKWARD_OPS[cell](*args)
    gi, gw, *rest = results
    # An absent optional parameter (a bias) gets no gradient.
    params = [None if absent else g
              for g, absent in zip(rest[:len(rest) - len(states)], ctx.optional[2:])]
    return (gi, None, gw, *params, *rest[len(rest) - len(states):], None, None)


def _no_double_backward(cell: str, ctx, *grads):
    raise RuntimeError(f"fastrnn: double backward through {cell} (the gradient of its "
                       "gradient) is not supported")


_AUTOGRAD = {}


def _register(cell: str) -> None:
    torch.library.register_fake(f"fastrnn::{cell}_forward")(partial(_forward_fake, cell))
    torch.library.register_fake(f"fastrnn::{cell}_backward")(partial(_backward_fake, cell))
    torch.library.register_autograd(f"fastrnn::{cell}_forward", partial(_backward, cell),
                                    setup_context=partial(_setup_context, cell))
    torch.library.register_autograd(f"fastrnn::{cell}_backward",
                                    partial(_no_double_backward, cell),
                                    setup_context=lambda ctx, inputs, output: None)
    forward_op = _FORWARD_OPS[cell]

    class Fused(torch.autograd.Function):
        """The eager path of the op's autograd (_call): the registered formula."""

        @staticmethod
        def forward(ctx, *inputs):
            with _compat.below_autograd():
                output = forward_op(*inputs)
            _setup_context(cell, ctx, inputs, output)
            ctx.mark_non_differentiable(output[-1])
            return output

        @staticmethod
        def backward(ctx, *grads):
            return _backward(cell, ctx, *grads)

    Fused.__name__ = Fused.__qualname__ = f"{cell}_fused"
    _AUTOGRAD[cell] = Fused


for _cell in LAYER_NORM_CELLS:
    _register(_cell)
