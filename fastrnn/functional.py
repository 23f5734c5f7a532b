"""Layers and directions on top of the fused ops (torch's ``_VF.lstm`` & co. for fastrnn).

Everything here works in the packed layout: ``data`` is ``[total_tokens, features]``
with the ``batch_sizes`` of a PackedSequence. A padded time-major batch ``[T, B, F]``
is the same layout with ``batch_sizes = [B] * T``, so it needs no special path.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _compat, ops, reference

# torch.nn mode -> fastrnn cell
MODE_TO_CELL = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _plain_ops_needed() -> bool:
    """torch.func transforms (grad, vmap, jacrev, ...) and forward-mode AD cannot go through
    the fused ops (torch.library's Python autograd does not support them); torch.nn's CPU
    modules, made of plain ops, can. There the layer runs in plain ops too."""
    if torch.compiler.is_compiling():
        return False
    return (reference.plain_ops_forced() or _compat.functorch_transform_active()
            or _compat.forward_ad_active())


def _eager_fused() -> bool:
    """``ops._eager() and not _plain_ops_needed()`` (the modules' fused eager path), with one
    look at each state."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not (_compat.functorch_transform_active() or _compat.forward_ad_active()
                or reference.plain_ops_forced())


def _first_tokens(batch_sizes: Tensor, batch: int, reverse: bool) -> Tensor:
    """Packed index of each row's first token in the walk: step 0 forward, its last
    step in reverse (rows are sorted by decreasing length, all at least 1). ``batch``
    is ``batch_sizes[0]``, taken from h0's shape: reading it from the tensor would be a
    data-dependent value for torch.export."""
    rows = torch.arange(batch)
    if not reverse:
        return rows
    lengths = (batch_sizes.unsqueeze(0) > rows.unsqueeze(1)).sum(1)
    offsets = batch_sizes.cumsum(0) - batch_sizes
    return offsets[lengths - 1] + rows


def _shifted_projection(data: Tensor, weight_ih: Tensor, bias_ih: Optional[Tensor],
                        first: Tensor, start: Tensor) -> Tensor:
    """The input projection with ``start`` (h0's share of the gates) added at each row's
    first token (``first``)."""
    return ops.input_projection(data, weight_ih, bias_ih).index_add(0, first, start)


def _projected_lstm(data: Tensor, weight_ih: Tensor, bias_ih: Optional[Tensor],
                    batch_sizes: Tensor, weight_hh: Tensor, bias_hh: Optional[Tensor],
                    weight_hr: Tensor, h0: Tensor, c0: Tensor, reverse: bool, recurrence):
    """LSTM with projections (torch.nn's proj_size) on the plain LSTM recurrence.

    With m = o * tanh(c), torch.nn's state is h = m @ W_hr^T, so a step's gates are
    proj + h_prev @ W_hh^T = proj + m_prev @ (W_hh @ W_hr)^T: the recurrence is a plain
    LSTM over m with weight_hh = W_hh @ W_hr, whose outputs and final state are then
    projected by one GEMM each. h0 enters only at each row's first step, so it is added
    to the input projection there and m starts at zero."""
    first = _first_tokens(batch_sizes, h0.shape[0], reverse).to(h0.device)
    start = h0.matmul(weight_hh.t())
    args = (data, weight_ih, bias_ih, first, start)
    m0 = h0.new_zeros(h0.shape[0], weight_hr.shape[1])
    m, m_n, c_n = recurrence(_shifted_projection(*args), batch_sizes, weight_hh.matmul(weight_hr),
                             bias_hh, m0, c0, reverse, ops.Recompute(_shifted_projection, args))
    return m.matmul(weight_hr.t()), m_n.matmul(weight_hr.t()), c_n


def zoneout_mask(p: float, training: bool, tokens: int, width: int, like: Tensor) -> Tensor:
    """The keep weights of zoneout for one layer and direction, ``[tokens, width]`` in the
    dtype and on the device of ``like`` (weight_hh): Bernoulli(p) draws from torch's
    generator in training (1: the unit keeps its previous state), p (their expectation) at
    eval."""
    if training:
        return torch.bernoulli(torch.full((tokens, width), p, dtype=like.dtype, device=like.device))
    return torch.full((tokens, width), p, dtype=like.dtype, device=like.device)


def _direction(cell: str, data: Tensor, batch_sizes: Tensor, weights: Sequence[Optional[Tensor]],
               h0: Tensor, c0: Optional[Tensor], reverse: bool, plain: bool,
               zoneout: Optional[Tensor] = None, layer_op: bool = False):
    """One layer and direction: ``plain`` in plain torch ops (reference), ``layer_op`` (eager
    calls) by the layer op (ops.layer, whose output is a fresh tensor), else by the input
    projection and the cell's op (with its recompute recipe)."""
    weight_ih, weight_hh, bias_ih, bias_hh, weight_hr = weights
    if weight_hr is None and layer_op:
        return ops.layer(cell, data, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0,
                         reverse, zoneout)
    # recurrence(input_proj, batch_sizes, weight_hh, bias_hh, h0, c0, reverse, recompute)
    # (zoneout: the keep weights, or None)
    if plain:
        def recurrence(*args):
            return reference.direction(cell, *args[:-1], zoneout)
    elif ops.CELLS[cell][2]:  # has a cell state: the op returns it
        def recurrence(*args):
            return getattr(ops, cell)(*args, zoneout)
    else:
        def recurrence(proj, batch_sizes, weight_hh, bias_hh, h0, c0, reverse, recompute):
            return (*getattr(ops, cell)(proj, batch_sizes, weight_hh, bias_hh, h0, reverse,
                                        recompute, zoneout), None)
    if weight_hr is not None:
        return _projected_lstm(data, weight_ih, bias_ih, batch_sizes, weight_hh, bias_hh,
                               weight_hr, h0, c0, reverse, recurrence)
    bias_ih, bias_hh = ops.split_biases(cell, bias_ih, bias_hh)
    projection = (data, weight_ih, bias_ih)
    return recurrence(ops.input_projection(*projection), batch_sizes, weight_hh, bias_hh, h0, c0,
                      reverse, ops.Recompute(ops.input_projection, projection))


def rnn_stack(
    mode: str,
    data: Tensor,
    batch_sizes: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    flat_weights: List[Tensor],
    has_bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    proj_size: int = 0,
    zoneout: float = 0.0,
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """A stack of recurrent layers over packed data.

    ``h0``/``c0`` are ``[num_layers * num_directions, batch, H]`` (``h0``: ``proj_size``
    when given) in the sorted batch order of the PackedSequence; ``flat_weights`` are in
    torch.nn's order (``weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr]`` per layer
    and direction). Returns ``(output_data, h_n, c_n)``; ``c_n`` is None unless LSTM.
    ``zoneout`` > 0: zoneout with probability p on the states of every layer and direction,
    one fresh mask each per call in training (zoneout_mask), p itself at eval.
    """
    cell = MODE_TO_CELL[mode]
    if zoneout > 0 and proj_size > 0:
        raise ValueError("fastrnn: zoneout with proj_size > 0 is not supported (the projected "
                         "LSTM's recurrence runs over m = o * tanh(c), not over h)")
    per_direction = (4 if has_bias else 2) + (1 if proj_size > 0 else 0)
    has_cell = ops.CELLS[cell][2]
    plain = _plain_ops_needed()
    # Eager calls (not compiled, traced or transformed) run the layer ops, autograd in C++.
    layer_op = _eager_fused()

    def direction(index, layer_input, reverse):
        weights = list(flat_weights[index * per_direction:(index + 1) * per_direction])
        weight_hr = weights.pop() if proj_size > 0 else None
        if not has_bias:
            weights += [None, None]
        weights.append(weight_hr)
        mask = None
        if zoneout > 0:
            states = 2 if has_cell else 1
            mask = zoneout_mask(zoneout, training, data.shape[0], states * weights[1].shape[1],
                                weights[1])
        return _direction(cell, layer_input, batch_sizes, weights, h0[index],
                          None if c0 is None else c0[index], reverse, plain, mask,
                          layer_op)

    return stack_layers(direction, data, num_layers, bidirectional, dropout, training, has_cell,
                        fresh_outputs=layer_op and proj_size == 0)


def _stack(states: List[Tensor]) -> Tensor:
    # One layer and direction: a view (cheaper than stack, and so is its backward).
    return states[0].unsqueeze(0) if len(states) == 1 else torch.stack(states)


def stack_layers(direction, data: Tensor, num_layers: int, bidirectional: bool, dropout: float,
                 training: bool, has_cell: bool,
                 fresh_outputs: bool = False) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Layers and directions: ``direction(index, layer_input, reverse) -> (output, h, c)``
    runs layer/direction ``index`` (``layer * num_directions + direction``); dropout between
    layers, directions concatenated. Returns ``(output_data, h_n, c_n)`` as rnn_stack.
    ``fresh_outputs``: direction's outputs are not saved for its backward (no copy needed)."""
    num_directions = 2 if bidirectional else 1
    layer_input = data
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for d in range(num_directions):
            output, h, c = direction(layer * num_directions + d, layer_input, d == 1)
            outputs.append(output)
            h_n.append(h)
            c_n.append(c)
        layer_input = outputs[0] if num_directions == 1 else torch.cat(outputs, dim=1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    if num_directions == 1 and not fresh_outputs and (layer_input.requires_grad
                                                      or torch.jit.is_tracing()):
        # The op saved this very tensor for backward; torch.nn returns a fresh one that
        # callers may change in place (out += residual, relu_), so they get a copy (always
        # in a trace, whose graph must not depend on the grad mode it was traced in).
        layer_input = layer_input.clone()
    return layer_input, _stack(h_n), (_stack(c_n) if has_cell else None)
