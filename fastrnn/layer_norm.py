"""fastrnn.LayerNormLSTM and fastrnn.LayerNormGRU: recurrent layers with layer
normalisation (Ba et al. 2016, as haste's LayerNormLSTM), which torch.nn does not have.

Each layer and direction normalises its input projection ``W_ih x`` and its recurrent
projection ``W_hh h`` over their G*H gate pre-activations, and the LSTM its cell state
before the tanh of ``h = o * tanh(LN_c(c))``; every norm has a gain (ones at first) and,
with ``bias=True``, a bias (zeros at first), which take the place of torch.nn's
``bias_ih``/``bias_hh``. The carried cell state is the un-normalised one. Otherwise the
constructor, inputs and outputs are those of ``fastrnn.LSTM``/``GRU`` (packed or padded,
batch_first, bidirectional, layers, dropout, weight_drop); there is no proj_size. The input
norm runs as one ``layer_norm`` over every token, the recurrence in fused kernels
(fastrnn.layer_norm_ops; CPU).
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional, layer_norm_ops, reference
from .modules import GRU, LSTM, _FusedRNNBase, _SingleStateMixin

__all__ = ["LayerNormLSTM", "LayerNormGRU", "layer_norm_stack"]

_MODE_TO_CELL = {"LSTM": "layer_norm_lstm", "GRU": "layer_norm_gru"}


class _LayerNormBase(_FusedRNNBase, nn.RNNBase):
    """torch.nn's RNNBase (argument checks, weights, hidden-state handling) with the norms'
    parameters added after each layer and direction's weight_ih and weight_hh."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 weight_drop: float = 0.0):
        # torch.nn's bias_ih/bias_hh are left out: the norms' biases take their place.
        super().__init__(mode, input_size, hidden_size, num_layers, False, batch_first, dropout,
                         bidirectional, 0, device, dtype, weight_drop=weight_drop)
        self.bias = bias
        gates = (4 if mode == "LSTM" else 3) * hidden_size
        norms = [("ih", gates), ("hh", gates)] + ([("c", hidden_size)] if mode == "LSTM" else [])
        num_directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = self._all_weights[layer * num_directions + direction]
                for norm, size in norms:
                    for part in ("weight", "bias") if bias else ("weight",):
                        name = f"ln_{norm}_{part}{suffix}"
                        setattr(self, name, nn.Parameter(torch.empty(size, device=device,
                                                                     dtype=dtype)))
                        names.append(name)
        self._flat_weights_names = [name for names in self._all_weights for name in names]
        self._init_flat_weights()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights as torch.nn's (uniform in +-1/sqrt(hidden_size)); norm gains 1, biases 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for name, param in self.named_parameters(recurse=False):
            if not name.startswith("ln_"):
                nn.init.uniform_(param, -stdv, stdv)
            elif name.startswith(("ln_ih_weight", "ln_hh_weight", "ln_c_weight")):
                nn.init.ones_(param)
            else:
                nn.init.zeros_(param)

    def _per_direction(self) -> int:
        norms = 3 if self.mode == "LSTM" else 2
        return 2 + norms * (2 if self.bias else 1)

    def _stack(self, mode, data, batch_sizes, h0, c0, weights, has_bias, num_layers, dropout,
               training, bidirectional, proj_size=0, zoneout=0.0):
        # proj_size and zoneout are always 0: the constructor takes neither.
        return layer_norm_stack(_MODE_TO_CELL[mode], data, batch_sizes, h0, c0, weights,
                                has_bias, num_layers, dropout, training, bidirectional)

    def __prepare_scriptable__(self):
        raise RuntimeError(f"fastrnn: torch.jit.script of {self._get_name()} is not supported "
                           "(torch.nn has no such module to script instead); torch.compile "
                           "and torch.export are")


class LayerNormLSTM(_LayerNormBase):
    """LSTM with layer-normalised input and recurrent projections and cell state. The same
    constructor (without proj_size), inputs and outputs as fastrnn.LSTM / torch.nn.LSTM;
    parameters per layer k (``_reverse`` for the second direction): ``weight_ih_lk``,
    ``weight_hh_lk``, ``ln_ih_weight_lk``, ``ln_hh_weight_lk``, ``ln_c_weight_lk`` and, with
    bias, ``ln_ih_bias_lk``, ``ln_hh_bias_lk``, ``ln_c_bias_lk``."""

    _BAD_RANK = LSTM._BAD_RANK

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 weight_drop: float = 0.0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype, weight_drop=weight_drop)

    # A (h, c) pair as torch.nn.LSTM's (not a subclass: code that handles torch.nn.LSTM
    # by its class, e.g. quantize_dynamic, must not take this for one).
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden
    _check_hx_structure = LSTM._check_hx_structure
    _hidden_shape_checks = LSTM._hidden_shape_checks
    _zero_state = LSTM._zero_state
    _pack_hidden = LSTM._pack_hidden
    _unbatch_hidden = LSTM._unbatch_hidden


class LayerNormGRU(_SingleStateMixin, _LayerNormBase):
    """GRU with layer-normalised input and recurrent projections: r and z from
    ``LN_ih(W_ih x) + LN_hh(W_hh h)``, n = tanh(LN_ih(W_ih x)_n + r * LN_hh(W_hh h)_n). The
    same constructor, inputs and outputs as fastrnn.GRU / torch.nn.GRU; parameters
    ``weight_ih_lk``, ``weight_hh_lk``, ``ln_ih_weight_lk``, ``ln_hh_weight_lk`` and, with
    bias, ``ln_ih_bias_lk``, ``ln_hh_bias_lk``."""

    _BAD_RANK = GRU._BAD_RANK

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 weight_drop: float = 0.0):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype, weight_drop=weight_drop)


def _direction(cell: str, data: Tensor, batch_sizes: Tensor, weights: List[Optional[Tensor]],
               h0: Tensor, c0: Optional[Tensor], reverse: bool, plain: bool):
    weight_ih, weight_hh, ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias, *c_norms = weights
    proj = F.layer_norm(data.matmul(weight_ih.t()), (weight_ih.shape[0],), ln_ih_weight,
                        ln_ih_bias, reference.LAYER_NORM_EPS)
    if plain:
        return reference.layer_norm_direction(cell, proj, batch_sizes, weight_hh, ln_hh_weight,
                                              ln_hh_bias, *(c_norms or [None, None]), h0, c0,
                                              reverse)
    if c0 is not None:
        return layer_norm_ops.layer_norm_lstm(proj, batch_sizes, weight_hh, ln_hh_weight,
                                              ln_hh_bias, *c_norms, h0, c0, reverse)
    output, h_n = layer_norm_ops.layer_norm_gru(proj, batch_sizes, weight_hh, ln_hh_weight,
                                                ln_hh_bias, h0, reverse)
    return output, h_n, None


def layer_norm_stack(cell: str, data: Tensor, batch_sizes: Tensor, h0: Tensor,
                     c0: Optional[Tensor], flat_weights: List[Tensor], has_bias: bool,
                     num_layers: int, dropout: float, training: bool, bidirectional: bool,
                     plain: Optional[bool] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """functional.rnn_stack for the LayerNorm cells; ``flat_weights`` in the modules' order
    (per layer and direction: weight_ih, weight_hh, then each norm's weight[, bias]).
    ``plain=True`` runs the recurrence in plain torch ops (fastrnn.reference)."""
    has_cell = layer_norm_ops.LAYER_NORM_CELLS[cell][3]
    per_direction = 2 + (3 if has_cell else 2) * (2 if has_bias else 1)
    if plain is None:
        plain = functional._plain_ops_needed()

    def direction(index, layer_input, reverse):
        weights = list(flat_weights[index * per_direction:(index + 1) * per_direction])
        if not has_bias:  # each norm's bias is None
            weights = weights[:2] + [w for gain in weights[2:] for w in (gain, None)]
        return _direction(cell, layer_input, batch_sizes, weights, h0[index],
                          None if c0 is None else c0[index], reverse, plain)

    return functional.stack_layers(direction, data, num_layers, bidirectional, dropout,
                                   training, has_cell)
