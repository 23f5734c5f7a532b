"""Layers and directions on top of the fused ops (torch's ``_VF.lstm`` & co. for fastrnn).

Everything here works in the packed layout: ``data`` is ``[total_tokens, features]``
with the ``batch_sizes`` of a PackedSequence. A padded time-major batch ``[T, B, F]``
is the same layout with ``batch_sizes = [B] * T``, so it needs no special path.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F
from torch import Tensor

from . import ops, reference

# torch.nn mode -> fastrnn cell
MODE_TO_CELL = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _plain_ops_needed() -> bool:
    """torch.func transforms (grad, vmap, jacrev, ...) and forward-mode AD cannot go through
    the fused ops (torch.library's Python autograd does not support them); torch.nn's CPU
    modules, made of plain ops, can. There the layer runs in plain ops too."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


def _direction(cell: str, data: Tensor, batch_sizes: Tensor, weights: Sequence[Optional[Tensor]],
               h0: Tensor, c0: Optional[Tensor], reverse: bool):
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    if _plain_ops_needed():
        return reference.direction(cell, ops.input_projection(data, weight_ih, bias_ih),
                                   batch_sizes, weight_hh, bias_hh, h0, c0, reverse)
    proj = ops.input_projection(data, weight_ih, bias_ih)
    if cell == "lstm":
        return ops.lstm(proj, batch_sizes, weight_hh, bias_hh, h0, c0, reverse)
    output, h_n = getattr(ops, cell)(proj, batch_sizes, weight_hh, bias_hh, h0, reverse)
    return output, h_n, None


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
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """A stack of recurrent layers over packed data.

    ``h0``/``c0`` are ``[num_layers * num_directions, batch, H]`` in the sorted
    batch order of the PackedSequence; ``flat_weights`` are in torch.nn's order
    (``weight_ih, weight_hh[, bias_ih, bias_hh]`` per layer and direction).
    Returns ``(output_data, h_n, c_n)``; ``c_n`` is None unless LSTM.
    """
    cell = MODE_TO_CELL[mode]
    num_directions = 2 if bidirectional else 1
    per_direction = 4 if has_bias else 2
    layer_input = data
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(num_directions):
            index = layer * num_directions + direction
            weights = flat_weights[index * per_direction:(index + 1) * per_direction]
            if not has_bias:
                weights = [*weights, None, None]
            output, h, c = _direction(cell, layer_input, batch_sizes, weights, h0[index],
                                      None if c0 is None else c0[index], reverse=direction == 1)
            outputs.append(output)
            h_n.append(h)
            c_n.append(c)
        layer_input = outputs[0] if num_directions == 1 else torch.cat(outputs, dim=1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    if num_directions == 1 and layer_input.requires_grad:
        # The op saved this very tensor for backward; torch.nn returns a fresh one that
        # callers may change in place (out += residual, relu_), so they get a copy.
        layer_input = layer_input.clone()
    return layer_input, torch.stack(h_n), (torch.stack(c_n) if cell == "lstm" else None)
