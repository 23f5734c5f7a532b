"""``fastrnn.pack_padded_sequence`` and ``pad_packed_sequence``: torch.nn.utils.rnn's, as one
gather each (the padding: docs/modules.md).

torch's packs step by step (a slice and a copy per distinct length, one more per step in its
backward) and, with ``enforce_sorted=False``, first copies the whole padded batch into sorted
order, whose backward is an ``index_add`` into zeros. At the AG News shape (batch 16, ~134
steps, 64 features) that is ~0.5 ms of a training step on 2 CPU cores, more than fastrnn's
LSTM forward and backward together (docs/speed.md). Here the packed rows are one
``index_select`` of the padded batch viewed as rows, the sort folded into the row index
(``torch.ops.fastrnn.packed_rows``, csrc/packing.cpp), and the backward writes each padded row
once (``torch.ops.fastrnn.gather_rows``).

The results are torch's, value for value: the same ``torch.sort`` gives ``sorted_indices``,
the same ``PackedSequence`` constructor ``unsorted_indices``, and ``data`` holds the same
elements; so are the gradients. Input that torch rejects or treats specially (lengths that are
not a 1-D CPU tensor of the batch's size, lengths out of range or unsorted with
``enforce_sorted``, empty input), and calls under ``torch.jit.trace``,
``torch.compile``, a ``torch.func`` transform or forward AD, go to torch's function itself, so
that they raise torch's errors and are traced as torch's ops.
"""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn.utils import rnn as torch_rnn
from torch.nn.utils.rnn import PackedSequence

from . import _compat, _extension  # noqa: F401  (_extension registers torch.ops.fastrnn.*)

__all__ = ["pack_padded_sequence", "pad_packed_sequence"]

# torch's own functions, held from import: the fallbacks below call these even where a user has
# patched torch.nn.utils.rnn's names with fastrnn's (which would otherwise call themselves).
_torch_pack_padded_sequence = torch_rnn.pack_padded_sequence
_torch_pad_packed_sequence = torch_rnn.pad_packed_sequence


def pack_padded_sequence(input: Tensor, lengths: Union[Tensor, List[int]], batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Packs a padded batch of variable-length sequences: the same arguments and results as
    ``torch.nn.utils.rnn.pack_padded_sequence`` (``input`` is ``[T, B, *]``, or ``[B, T, *]``
    with ``batch_first``; ``lengths`` a list or a 1-D CPU tensor of the B lengths), in one
    gather whose backward is one scatter."""
    packed = _fast_pack(input, lengths, batch_first, enforce_sorted)
    if packed is None:
        return _torch_pack_padded_sequence(input, lengths, batch_first, enforce_sorted)
    return packed


def _traced() -> bool:
    """torch's function runs here: traced and compiled graphs get torch's ops, and under a
    torch.func transform or forward AD its behaviour (torch's packing has no forward AD)."""
    return (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or _compat.functorch_transform_active() or _compat.forward_ad_active())


def _fast_pack(input, lengths, batch_first: bool, enforce_sorted: bool) -> Optional[PackedSequence]:
    """The packed sequence, or None where torch's function must run (see the module's doc)."""
    if _traced() or not isinstance(input, Tensor) or input.dim() < 2 or input.numel() == 0:
        return None
    if isinstance(lengths, Tensor):
        if lengths.device.type != "cpu" or lengths.dim() != 1 or lengths.is_complex():
            return None
        lengths = lengths.to(dtype=torch.int64)
    else:
        try:
            lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
        except (TypeError, ValueError, RuntimeError):
            return None
        if lengths.dim() != 1:
            return None
    steps, batch = (input.shape[1], input.shape[0]) if batch_first else input.shape[:2]
    if lengths.numel() != batch or batch == 0:
        return None
    sorted_indices = None
    if not enforce_sorted:
        lengths, sorted_indices = torch.sort(lengths, descending=True)
    try:  # checks the lengths (sorted, in [1, steps]): torch's function decides otherwise
        index, batch_sizes = _PACKED_ROWS(lengths, sorted_indices, steps, batch_first)
    except RuntimeError:
        return None
    if sorted_indices is not None:
        sorted_indices = sorted_indices.to(input.device)
    rows = input.reshape((batch * steps,) + input.shape[2:])
    data = _GATHER_ROWS(rows, index.to(input.device))
    return PackedSequence(data, batch_sizes, sorted_indices, None)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Pads a packed batch of variable-length sequences: the same arguments and results as
    ``torch.nn.utils.rnn.pad_packed_sequence`` (the padded batch in the caller's order, and
    its lengths), in one pass whose backward is one gather."""
    padded = _fast_pad(sequence, batch_first, padding_value, total_length)
    if padded is None:
        return _torch_pad_packed_sequence(sequence, batch_first, padding_value, total_length)
    return padded


def _fast_pad(sequence, batch_first: bool, padding_value, total_length):
    """(padded, lengths), or None where torch's function must run: traced calls, and anything
    but a well-formed PackedSequence (torch raises or decides there)."""
    if _traced() or not isinstance(sequence, PackedSequence):
        return None
    data, batch_sizes, _, unsorted_indices = sequence
    # padded_positions checks batch_sizes (a non-empty 1-D int64 CPU tensor) below.
    if (not isinstance(data, Tensor) or data.dim() < 1 or not isinstance(batch_sizes, Tensor)
            or type(padding_value) not in (int, float, bool)):
        return None
    steps = batch_sizes.numel()
    if total_length is not None:
        if type(total_length) is not int or total_length < steps:
            return None
        steps = total_length
    if unsorted_indices is not None and not isinstance(unsorted_indices, Tensor):
        return None
    unsorted = None if unsorted_indices is None else unsorted_indices.cpu()
    try:  # checks the PackedSequence: torch's function decides what a malformed one gives
        positions, lengths = _PADDED_POSITIONS(batch_sizes, unsorted, steps, batch_first)
    except RuntimeError:
        return None
    if positions.numel() != data.shape[0]:
        return None
    batch = lengths.numel()
    padded = _UNPACK_ROWS(data, positions.to(data.device), batch * steps, padding_value)
    shape = (batch, steps) if batch_first else (steps, batch)
    padded = padded.view(shape + data.shape[1:])
    return padded, lengths


_PACKED_ROWS = torch.ops.fastrnn.packed_rows.default
_UNPACK_ROWS = torch.ops.fastrnn.unpack_rows.default
_PADDED_POSITIONS = torch.ops.fastrnn.padded_positions.default
_GATHER_ROWS = torch.ops.fastrnn.gather_rows.default


@torch.library.register_fake("fastrnn::packed_rows")
def _packed_rows_fake(lengths, sorted_indices, steps, batch_first):
    ctx = torch.library.get_ctx()
    return lengths.new_empty(ctx.new_dynamic_size()), lengths.new_empty(ctx.new_dynamic_size())


@torch.library.register_fake("fastrnn::gather_rows")
def _gather_rows_fake(rows, index):
    return rows.new_empty((index.shape[0],) + rows.shape[1:])


@torch.library.register_fake("fastrnn::unpack_rows")
def _unpack_rows_fake(data, positions, rows, padding_value):
    return data.new_empty((rows,) + data.shape[1:])


@torch.library.register_fake("fastrnn::padded_positions")
def _padded_positions_fake(batch_sizes, unsorted_indices, steps, batch_first):
    ctx = torch.library.get_ctx()
    return batch_sizes.new_empty(ctx.new_dynamic_size()), batch_sizes.new_empty(ctx.new_dynamic_size())
