"""Drop-in replacements for torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN.

They subclass torch.nn.LSTM/GRU/RNN, so ``isinstance(m, torch.nn.LSTM)`` holds and the
constructor, argument validation, parameters and their names, initialisation,
``state_dict``, ``all_weights``, ``extra_repr`` and pickling are torch's. Only
``forward`` differs: the recurrence runs through fastrnn's fused ops (``repr`` says
``fastrnn.LSTM(...)``). torch.compile, which refuses to trace torch.nn's RNN classes, is
told that these are plain modules (fastrnn._compat) and traces them without a graph break.
"""
import numbers
from contextlib import nullcontext
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import _compat, ops
from .functional import MODE_TO_CELL, _eager_fused, rnn_stack

__all__ = ["LSTM", "GRU", "RNN", "convert", "to_torch"]


class _FusedRNNBase(nn.RNNBase):
    """forward() shared by the three modules; torch.nn's input handling, fastrnn's math.
    Listed before torch.nn's class in each module's bases, so its methods win."""

    # DropConnect on the recurrent weights (AWD-LSTM's weight drop), beyond torch.nn. A class
    # default too: modules made by convert() or unpickled from before the option have none.
    weight_drop = 0.0
    # Zoneout (Krueger et al. 2016) on the recurrent states, beyond torch.nn: each unit keeps
    # its previous state with probability p in training, and mixes in p of it at eval. A
    # class default for the same reason as weight_drop.
    zoneout = 0.0

    def __init__(self, *args, weight_drop: float = 0.0, zoneout: float = 0.0, **kwargs):
        # Any real number, as torch.nn's dropout takes (numpy scalars, fractions); not bool.
        if isinstance(weight_drop, bool) or not isinstance(weight_drop, numbers.Real) \
                or not 0 <= weight_drop < 1:
            raise ValueError("weight_drop should be a number in range [0, 1) representing the "
                             f"probability of dropping an element of weight_hh, but got "
                             f"{weight_drop!r}")
        if isinstance(zoneout, bool) or not isinstance(zoneout, numbers.Real) \
                or not 0 <= zoneout < 1:
            raise ValueError("zoneout should be a number in range [0, 1) representing the "
                             "probability that a hidden unit keeps its previous state, but got "
                             f"{zoneout!r}")
        super().__init__(*args, **kwargs)
        if zoneout and self.proj_size > 0:
            raise ValueError("fastrnn: zoneout with proj_size > 0 is not supported (the "
                             "projected LSTM's recurrence runs over m = o * tanh(c), not h)")
        self.weight_drop = float(weight_drop)
        self.zoneout = float(zoneout)

    def _get_name(self) -> str:
        # A user's subclass is named as torch.nn names it (its class name alone).
        own = type(self).__module__.split(".")[0] == "fastrnn"
        return f"fastrnn.{type(self).__name__}" if own else type(self).__name__

    def extra_repr(self) -> str:
        text = super().extra_repr()
        text += f", weight_drop={self.weight_drop}" if self.weight_drop else ""
        return text + (f", zoneout={self.zoneout}" if self.zoneout else "")

    def _weights(self):
        """The flat weights this forward uses: in training with weight_drop, each weight_hh
        with one fresh dropout mask (the same for every step, as AWD-LSTM's WeightDrop)."""
        p = self.weight_drop
        if not (p > 0 and self.training):
            return self._flat_weights
        return [F.dropout(w, p=p, training=True) if name.startswith("weight_hh") else w
                for name, w in zip(self._flat_weights_names, self._flat_weights)]

    def flatten_parameters(self) -> None:
        # cuDNN's flat weight buffer is never used by fastrnn.
        return None

    def _update_flat_weights(self) -> bool:
        """RNNBase's re-reads every weight by name (getattr) on each call; when the flat
        weights are still the very tensors in _parameters nothing can have changed.
        Otherwise (a weight replaced or None, functional_call, parametrizations) torch's.
        Returns whether the flat weights are the module's own parameters."""
        params = self._parameters
        for name, w in zip(self._flat_weights_names, self._flat_weights):
            if w is None or params.get(name) is not w:
                super()._update_flat_weights()
                return False
        return True

    def check_hidden_size(self, hx: Tensor, expected_hidden_size: Tuple[int, int, int],
                          msg: str = "Expected hidden size {}, got {}") -> None:
        if not torch.compiler.is_compiling():
            if hx.size() != expected_hidden_size:
                raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))
            return
        # The batch of a PackedSequence is data (batch_sizes[0]): torch.compile can assert
        # on it (torch._check, with a constant message) but not branch on it.
        torch._check(hx.dim() == len(expected_hidden_size),
                     lambda: "RNN: hidden state of the wrong rank")
        for got, want in zip(hx.size(), expected_hidden_size):
            torch._check(got == want, lambda: "RNN: hidden state of the wrong size")

    def _hidden_shape_checks(self, hx, is_batched: bool):
        """torch.nn's rank checks of a user-given hx (3-D batched, 2-D unbatched)."""
        raise NotImplementedError

    def _zero_state(self, input: Tensor, max_batch_size: int):
        raise NotImplementedError

    def forward(self, input, hx=None):
        self._check_flat_weights(own_parameters=self._update_flat_weights())
        if self._flat_weights[0].is_complex():
            return self._complex_forward(input, hx)
        orig_input = input
        hx_given = hx is not None
        if hx_given:
            self._check_hx_structure(hx, isinstance(orig_input, PackedSequence))
        stack_op = self._stack_op_applies()
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = input
            is_batched = True
            if hx is None:
                _check_zero_state_batch(batch_sizes)
                if not stack_op:  # the stack op makes the zero state itself
                    hx = self._zero_state(input, int(batch_sizes[0]))
            else:
                # hx is in the caller's batch order; the packed rows are sorted.
                _check_sorted_indices(sorted_indices, batch_sizes)
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            if input.dim() not in (2, 3):
                raise ValueError(self._BAD_RANK.format(input.dim()))
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            if hx is None:
                hx = self._zero_state(input, input.size(batch_dim))
            else:
                hx = self._hidden_shape_checks(hx, is_batched)
        if hx_given:
            self.check_forward_args(input, hx, batch_sizes)
        else:
            # The zero state made above has the expected sizes: only the input to check.
            self.check_input(input, batch_sizes)

        if stack_op and batch_sizes is not None:
            # The states come back in the caller's batch order (unsorted_indices).
            output, *hidden = self._layers_by_stack_op(input, batch_sizes, hx, True,
                                                       unsorted_indices)
            return _packed(output, batch_sizes, sorted_indices, unsorted_indices), \
                self._pack_hidden(hidden)
        if self._torch_is_faster(input, batch_sizes, hx):
            output, *hidden = self._torch_layers(input, batch_sizes, hx)
        else:
            output, hidden = self._fused(input, batch_sizes, hx, stack_op)

        if isinstance(orig_input, PackedSequence):
            packed = _packed(output, batch_sizes, sorted_indices, unsorted_indices)
            return packed, self.permute_hidden(self._pack_hidden(hidden), unsorted_indices)
        hidden = self._pack_hidden(hidden)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = self._unbatch_hidden(hidden)
        return output, hidden

    def _complex_forward(self, input, hx):
        """torch.nn's own forward: its modules take complex parameters (the generic ATen
        cells), fastrnn's kernels are real. What torch.nn has no module for (weight_drop,
        zoneout, the LayerNorm modules) needs real parameters."""
        torch_cls = next((cls for cls in type(self).__mro__ if cls in _TORCH_TO_FASTRNN), None)
        if torch_cls is None or self.weight_drop or self.zoneout:
            raise RuntimeError(f"fastrnn: {self._get_name()} with weight_drop, zoneout or layer "
                               f"norm needs real parameters, got {self._flat_weights[0].dtype}")
        return torch_cls.forward(self, input, hx)

    def _autocast_dtype(self, device_type: str, packed: bool) -> torch.dtype:
        """The dtype torch.nn's module computes in (and returns) under autocast: on CUDA
        cuDNN's autocast wrapper casts to float16 whatever autocast's dtype
        (aten/src/ATen/cudnn/AutocastRNN.cpp; without cuDNN the cell ops follow autocast's
        dtype); on the CPU autocast lists lstm on padded input and rnn_tanh/rnn_relu, not
        gru nor lstm on packed input, which run in the parameters' dtype. Autocast never
        casts float64."""
        own = self._flat_weights[0].dtype
        if own == torch.float64:
            return own
        if device_type == "cuda":
            if torch.backends.cudnn.enabled:
                return torch.float16
            return torch.get_autocast_dtype("cuda")
        lower = self.mode.startswith("RNN") or (self.mode == "LSTM" and not packed)
        return torch.get_autocast_dtype("cpu") if lower else own

    def _check_flat_weights(self, own_parameters: bool = False) -> None:
        """torch.nn's errors for parameters changed after construction: a weight set to None
        (TypeError) or num_layers no longer matching the parameters (RuntimeError).
        own_parameters: the flat weights are known to be the module's parameters (tensors)."""
        expected = self.num_layers * (2 if self.bidirectional else 1) * self._per_direction()
        if len(self._flat_weights) != expected:
            raise RuntimeError(
                f"Expected {'more' if len(self._flat_weights) < expected else 'fewer'} weights "
                f"in stacked_rnn: {self.mode} with num_layers={self.num_layers}, bidirectional="
                f"{self.bidirectional}, bias={self.bias}, proj_size={self.proj_size} needs "
                f"{expected} weight tensors, the module holds {len(self._flat_weights)}")
        if own_parameters:
            return
        for index, (name, weight) in enumerate(zip(self._flat_weights_names,
                                                   self._flat_weights)):
            if not isinstance(weight, Tensor):
                raise TypeError(f"expected Tensor as element {index} in argument 2, but got "
                                f"{type(weight).__name__} (the module's {name})")

    def _per_direction(self) -> int:
        """Flat weights per layer and direction."""
        return (4 if self.bias else 2) + (1 if self.proj_size > 0 else 0)

    def _stack(self, *args):
        """The layers over packed data (functional.rnn_stack's arguments and results)."""
        return rnn_stack(*args)

    def _check_hx_structure(self, hx, packed: bool) -> None:
        """torch.nn's errors for an hx of the wrong kind (LSTM overrides this)."""

    def _fused(self, input: Tensor, batch_sizes: Optional[Tensor], hx, stack_op: bool):
        # stack_op: _stack_op_applies() (forward asked it already)
        h0, c0 = (hx if isinstance(hx, (tuple, list)) else (hx, None))
        if batch_sizes is not None:
            data = input
            padded_shape = None
        else:
            time_major = input.transpose(0, 1) if self.batch_first else input
            steps, batch = time_major.shape[0], time_major.shape[1]
            if steps == 0:
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
            data = time_major.reshape(steps * batch, time_major.shape[2])
            # An empty batch has no live row at any step: no steps at all for the ops.
            batch_sizes = torch.full((steps if batch else 0,), batch, dtype=torch.int64,
                                     device="cpu")
            padded_shape = (steps, batch)
        if stack_op:
            output, h_n, *c_n = self._layers_by_stack_op(data, batch_sizes, (h0, c0),
                                                         padded_shape is None, None)
            c_n = c_n[0] if c_n else None
        else:
            data, h0, c0, weights, autocast = self._autocast_inputs(data, h0, c0,
                                                                   padded_shape is None)
            with torch.autocast(data.device.type, enabled=False) if autocast else nullcontext():
                output, h_n, c_n = self._stack(
                    self.mode, data, batch_sizes, h0, c0, weights, self.bias, self.num_layers,
                    self.dropout, self.training, self.bidirectional, self.proj_size,
                    self.zoneout)
        if padded_shape is not None:
            output = output.view(*padded_shape, output.shape[-1])
            if self.batch_first:
                output = output.transpose(0, 1)
        return output, (h_n, c_n)

    def _autocast_inputs(self, data: Tensor, h0: Optional[Tensor], c0: Optional[Tensor],
                         packed: bool):
        """``(data, h0, c0, weights, autocast)``: the inputs and this call's weights
        (_weights), cast to the dtype torch.nn computes in when autocast is on (autocast
        True: the layers then run with it off)."""
        weights = self._weights()
        device = data.device.type
        if not (device in ("cpu", "cuda") and torch.is_autocast_enabled(device)):
            return data, h0, c0, weights, False
        dtype = self._autocast_dtype(device, packed)
        cast = [None if t is None else t.to(dtype) for t in (data, h0, c0)]
        return (*cast, [w.to(dtype) for w in weights], True)

    def _stack_op_applies(self) -> bool:
        """Whether an eager call runs its layers as one op, ops.rnn_stack (layers and
        directions; on packed data also the zero states and the states' batch order, in
        C++). Not under torch.compile, jit.trace, torch.func or forward AD
        (functional.rnn_stack's plain ops or registered ops), nor with proj_size, zoneout or
        another _stack."""
        return (type(self)._stack is _FusedRNNBase._stack and not self.proj_size
                and not self.zoneout and _eager_fused())

    def _layers_by_stack_op(self, data: Tensor, batch_sizes: Tensor, hx, packed: bool,
                            unsorted_indices: Optional[Tensor]):
        """``[output, h_n(, c_n)]`` of ops.rnn_stack over ``data`` in the packed layout (see
        _stack_op_applies; ``packed``: the caller's input was a PackedSequence, which decides
        the autocast dtype); ``hx`` None (zero states) or in the packed rows' order, the
        states permuted by ``unsorted_indices`` when given."""
        h0, c0 = (hx if isinstance(hx, (tuple, list)) else (hx, None))

        def run(data, h0, c0, weights):
            return ops.rnn_stack(MODE_TO_CELL[self.mode], data, batch_sizes, h0, c0,
                                 unsorted_indices, weights, self.bias, self.num_layers,
                                 self.dropout, self.training, self.bidirectional)

        if not _compat.autocast_enabled_anywhere():  # without autocast's bookkeeping (~2 us)
            return run(data, h0, c0, self._weights())
        data, h0, c0, weights, autocast = self._autocast_inputs(data, h0, c0, packed)
        with torch.autocast(data.device.type, enabled=False) if autocast else nullcontext():
            return run(data, h0, c0, weights)

    def __prepare_scriptable__(self):
        # torch.jit.script cannot compile this forward: it scripts torch.nn's module in
        # its place, holding these very parameters (torch.nn's results, not fused).
        if self.weight_drop:
            raise RuntimeError("fastrnn: torch.jit.script of a module with weight_drop is not "
                               "supported (torch.nn has no weight drop to script instead)")
        if self.zoneout:
            raise RuntimeError("fastrnn: torch.jit.script of a module with zoneout is not "
                               "supported (torch.nn has no zoneout to script instead)")
        if torch.nn.utils.parametrize.is_parametrized(self):
            raise RuntimeError("fastrnn: torch.jit.script of a parametrized fastrnn module is "
                               "not supported; script fastrnn.to_torch(model) instead")
        torch_cls = _FASTRNN_TO_TORCH.get(type(self))
        if torch_cls is None:
            # A user's subclass: a torch.nn twin would drop its own methods and attributes.
            base = next(cls for cls in type(self).__mro__ if cls in _FASTRNN_TO_TORCH)
            raise RuntimeError(
                f"fastrnn: torch.jit.script of {type(self).__qualname__}, a subclass of "
                f"fastrnn.{base.__name__}, is not supported (fastrnn's forward is not "
                f"scriptable); subclass torch.nn.{base.__name__} for a scripted model")
        with torch.device("meta"):
            twin = torch_cls(**_constructor_args(self))
        for name in self._flat_weights_names:
            setattr(twin, name, getattr(self, name))
        twin.train(self.training)
        return twin

    def _torch_is_faster(self, input, batch_sizes, hx) -> bool:
        """Whether this call runs torch.nn's own computation (_torch_layers), where it was
        measured faster; never with weight_drop in training or zoneout, which torch.nn lacks."""
        if (self.weight_drop and self.training) or self.zoneout:  # zoneout: at eval too
            return False
        return self._torch_policy(self, input, batch_sizes, hx)

    @staticmethod
    def _torch_policy(module, input, batch_sizes, hx) -> bool:
        return False

    def _torch_layers(self, input, batch_sizes, hx):
        return _compat.torch_layers(self, input, batch_sizes, hx)

    def permute_hidden(self, hx, permutation):
        # torch.nn's index_select, with a gather as its backward in eager calls (ops) that
        # can take a custom autograd (not under forward AD, whose jvp it lacks).
        if permutation is None or not _eager_fused():
            return super().permute_hidden(hx, permutation)
        if self.mode == "LSTM":
            return (_permute(hx[0], permutation), _permute(hx[1], permutation))
        return _permute(hx, permutation)

    def _pack_hidden(self, hidden):
        return hidden[0]

    def _unbatch_hidden(self, hidden):
        return hidden.squeeze(1)


def _check_sorted_indices(sorted_indices: Optional[Tensor], batch_sizes: Tensor) -> None:
    """A given hx is permuted by the PackedSequence's sorted_indices, which must hold one index
    per sequence. torch.nn.GRU/RNN find out afterwards from the permuted hx's size; torch.nn.LSTM
    runs with what the permutation gives (found by bad-input fuzzing). Under torch.compile the
    batch is data: check_forward_args's torch._check catches it there."""
    if sorted_indices is None or batch_sizes.numel() == 0 or torch.compiler.is_compiling():
        return
    batch = int(batch_sizes[0])
    if sorted_indices.dim() != 1 or sorted_indices.numel() != batch:
        raise RuntimeError(
            f"fastrnn: the PackedSequence's sorted_indices must have shape [batch_sizes[0]] = "
            f"[{batch}] (one index per sequence), got {list(sorted_indices.shape)}")


def _check_zero_state_batch(batch_sizes: Tensor) -> None:
    """torch.nn's errors where its forward reads batch_sizes[0] for the zero state: IndexError
    for an empty PackedSequence, TypeError for batch sizes that are not integers."""
    if torch.compiler.is_compiling():
        return
    if batch_sizes.numel() == 0:
        raise IndexError("index 0 is out of bounds for dimension 0 with size 0 (an empty "
                         "PackedSequence: batch_sizes has no entries)")
    if batch_sizes.is_floating_point() or batch_sizes.is_complex() \
            or batch_sizes.dtype == torch.bool:
        raise TypeError(f"batch_sizes must hold integers (int64, as pack_padded_sequence makes "
                        f"them), got {batch_sizes.dtype}")


def _packed(data: Tensor, batch_sizes: Tensor, sorted_indices: Optional[Tensor],
            unsorted_indices: Optional[Tensor]) -> PackedSequence:
    # PackedSequence(...) with all four fields, which came from the caller's PackedSequence,
    # only checks them again (~1.3 us).
    return tuple.__new__(PackedSequence, (data, batch_sizes, sorted_indices, unsorted_indices))


def _permute(state: Tensor, permutation: Tensor) -> Tensor:
    # Without a gradient to come, or for a state of the wrong rank (whose error torch.nn
    # raises further on), torch.nn's own call.
    if isinstance(state, Tensor) and state.dim() == 3 and state.requires_grad \
            and torch.is_grad_enabled():
        return ops.permute_batch(state, permutation)
    return state.index_select(1, permutation)


class _SingleStateMixin:
    """hx handling of GRU and RNN: one state tensor."""

    def _hidden_shape_checks(self, hx, is_batched):
        if not is_batched:
            if hx.dim() != 2:
                raise RuntimeError(
                    f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor"
                )
            return hx.unsqueeze(1)
        if hx.dim() != 3:
            raise RuntimeError(
                f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor"
            )
        return hx

    def _zero_state(self, input, max_batch_size):
        num_directions = 2 if self.bidirectional else 1
        return torch.zeros(self.num_layers * num_directions, max_batch_size, self.hidden_size,
                           dtype=input.dtype, device=input.device)


class LSTM(_FusedRNNBase, nn.LSTM):
    """Drop-in torch.nn.LSTM (same arguments, parameters and results), fused on CPU and CUDA."""

    _BAD_RANK = "LSTM: Expected input to be 2D or 3D, got {}D instead"

    def _check_hx_structure(self, hx, packed):
        if isinstance(hx, Tensor):
            if packed:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of tensors, got a Tensor")
        elif isinstance(hx, (tuple, list)) and (len(hx) > 2 or (packed and len(hx) < 2)):
            raise RuntimeError(f"lstm expects two hidden states, got {len(hx)}")

    def _hidden_shape_checks(self, hx, is_batched):
        if is_batched:
            if hx[0].dim() != 3 or hx[1].dim() != 3:
                raise RuntimeError(
                    "For batched 3-D input, hx and cx should also be 3-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            return hx
        if hx[0].dim() != 2 or hx[1].dim() != 2:
            raise RuntimeError(
                "For unbatched 2-D input, hx and cx should also be 2-D but got "
                f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
            )
        return (hx[0].unsqueeze(1), hx[1].unsqueeze(1))

    def _zero_state(self, input, max_batch_size):
        num_directions = 2 if self.bidirectional else 1
        real_hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        shape = (self.num_layers * num_directions, max_batch_size)
        h = torch.zeros(*shape, real_hidden_size, dtype=input.dtype, device=input.device)
        c = torch.zeros(*shape, self.hidden_size, dtype=input.dtype, device=input.device)
        return (h, c)

    def _pack_hidden(self, hidden):
        return (hidden[0], hidden[1])

    def check_input(self, input: Tensor, batch_sizes: Optional[Tensor]) -> None:
        # torch.nn.LSTM checks no packed input: a dtype mismatch surfaces from its matmul as
        # a RuntimeError (torch.nn.GRU and RNN raise check_input's ValueError).
        try:
            super().check_input(input, batch_sizes)
        except ValueError as error:
            if batch_sizes is None:
                raise
            raise RuntimeError(str(error)) from None

    _torch_policy = staticmethod(_compat.torch_lstm_is_faster)

    def _unbatch_hidden(self, hidden):
        return (hidden[0].squeeze(1), hidden[1].squeeze(1))


class GRU(_SingleStateMixin, _FusedRNNBase, nn.GRU):
    """Drop-in torch.nn.GRU (same arguments, parameters and results), fused on CPU and CUDA."""

    _BAD_RANK = "GRU: Expected input to be 2D or 3D, got {}D instead"


class RNN(_SingleStateMixin, _FusedRNNBase, nn.RNN):
    """Drop-in torch.nn.RNN (tanh or relu; same arguments, parameters and results), fused on
    CPU and CUDA."""

    _BAD_RANK = "RNN: Expected input to be 2D or 3D, got {}D tensor instead"
    _torch_policy = staticmethod(_compat.torch_rnn_is_faster)


_TORCH_TO_FASTRNN = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN}
_FASTRNN_TO_TORCH = {v: k for k, v in _TORCH_TO_FASTRNN.items()}
_compat.let_dynamo_trace(lambda: (_FusedRNNBase,))

# help(fastrnn.LSTM) & co. show torch.nn's documentation of the arguments, inputs and
# outputs, which are the same.
for _theirs, _ours in _TORCH_TO_FASTRNN.items():
    _ours.__doc__ = (f"{_ours.__doc__}\n\ntorch.nn.{_theirs.__name__}'s documentation:\n\n"
                     f"{_theirs.__doc__}")
del _ours, _theirs


def _constructor_args(module: nn.RNNBase) -> dict:
    kwargs = dict(
        input_size=module.input_size, hidden_size=module.hidden_size,
        num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
        dropout=module.dropout, bidirectional=module.bidirectional,
    )
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    if module.mode.startswith("RNN"):
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def _target_class(cls: type, table: dict) -> Optional[type]:
    """The class a module of class `cls` becomes, or None if it is not converted. A
    parametrized module (torch.nn.utils.parametrize) has a generated subclass holding the
    parametrization properties: it gets the same subclass of the target class."""
    if cls in table:
        return table[cls]
    base = cls.__bases__[0] if len(cls.__bases__) == 1 else None
    if base in table and cls.__name__ == f"Parametrized{base.__name__}":
        namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
        return type(f"Parametrized{table[base].__name__}", (table[base],), namespace)
    return None


def _swap(model: nn.Module, table: dict) -> nn.Module:
    # fastrnn's modules are torch.nn.RNNBase modules with the same attributes as torch.nn's
    # and only another forward: changing the class of each module in place keeps its very
    # parameters (optimizers, requires_grad, dtypes, sharing and tying), buffers, hooks,
    # pruning and parametrizations, training mode and any attribute of the user's.
    for module in model.modules():
        new_cls = _target_class(type(module), table)
        if new_cls is not None:
            module.__class__ = new_cls
    return model


def convert(model: nn.Module) -> nn.Module:
    """Turns every torch.nn.LSTM/GRU/RNN in `model` (or `model` itself) into the fastrnn
    module, in place: the same module objects, parameters, buffers and hooks, with
    fastrnn's forward. Subclasses of torch.nn's modules (other than parametrized ones) are
    left as they are. Returns the model."""
    return _swap(model, _TORCH_TO_FASTRNN)


def to_torch(model: nn.Module) -> nn.Module:
    """The inverse of convert(), in place: fastrnn modules back to torch.nn ones (e.g. for
    ONNX export)."""
    return _swap(model, _FASTRNN_TO_TORCH)
