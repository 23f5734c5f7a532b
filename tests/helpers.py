"""Shared helpers: torch.nn references and random packed batches."""
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

# cell name -> (torch.nn class, extra constructor arguments)
TORCH_CELLS = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
}

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def torch_module(cell, input_size, hidden_size, **kwargs):
    cls, extra = TORCH_CELLS[cell]
    return cls(input_size, hidden_size, **extra, **kwargs)


def random_lengths(batch, max_len, generator=None, layout="unsorted"):
    """Lengths for a batch: 'padded' (all equal), 'sorted' (decreasing) or 'unsorted'."""
    if layout == "padded":
        return torch.full((batch,), max_len, dtype=torch.int64)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=generator)
    lengths[0] = max_len  # the batch keeps its full length
    if layout == "sorted":
        lengths = lengths.sort(descending=True).values
    else:
        lengths = lengths[torch.randperm(batch, generator=generator)]
    return lengths


def pack(x, lengths, layout):
    """PackedSequence of a time-major padded batch x."""
    return pack_padded_sequence(x, lengths, enforce_sorted=(layout != "unsorted"))


def op_direction(cell, packed, weight_ih, weight_hh, bias_ih, bias_hh, h0, c0, reverse):
    """One direction of one layer through the fastrnn op, with states in the
    PackedSequence's sorted batch order. Returns (output_data, h_n, c_n or None)."""
    proj = packed.data @ weight_ih.t()
    if bias_ih is not None:
        proj = proj + bias_ih
    if cell == "lstm":
        return fastrnn.lstm(proj, packed.batch_sizes, weight_hh, bias_hh, h0, c0, reverse)
    out, h_n = getattr(fastrnn, cell)(proj, packed.batch_sizes, weight_hh, bias_hh, h0, reverse)
    return out, h_n, None


def op_bidirectional(cell, module, packed, h0, c0=None):
    """A one-layer bidirectional torch.nn module's forward, computed with the
    fastrnn ops from the module's own parameters. h0/c0 are [2, batch, H] in
    the caller's batch order, as for the module."""
    order = packed.sorted_indices
    unorder = packed.unsorted_indices

    def sort(state):
        return None if state is None else (state if order is None else state.index_select(1, order))

    def unsort(state):
        return state if unorder is None else state.index_select(1, unorder)

    h0, c0 = sort(h0), sort(c0)
    outs, hs, cs = [], [], []
    for direction, suffix in enumerate(["", "_reverse"]):
        p = {name: getattr(module, f"{name}_l0{suffix}", None)
             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        out, h_n, c_n = op_direction(
            cell, packed, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"],
            h0[direction], None if c0 is None else c0[direction], reverse=bool(direction),
        )
        outs.append(out)
        hs.append(h_n)
        cs.append(c_n)
    output = torch.cat(outs, dim=1)
    h_n = unsort(torch.stack(hs))
    c_n = unsort(torch.stack(cs)) if cell == "lstm" else None
    return output, h_n, c_n


def build_emulator(name, sources, headers):
    """Compiles a CUDA-path emulator of tests/emulation/ for the CPU (torch's extension
    cache, keyed by a digest of every source and header: it would otherwise reuse a build
    after a header changed); its ops register under their own namespace."""
    import hashlib
    import warnings
    from pathlib import Path

    from torch.utils import cpp_extension

    root = Path(__file__).resolve().parent.parent
    paths = [root / p for p in sources + headers]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpp_extension.load(
            name=f"{name}_{digest[:12]}", sources=[str(root / p) for p in sources],
            extra_include_paths=[str(root / "csrc"), str(root / "tests/emulation")],
            extra_cflags=["-std=c++20", "-O1", "-Wno-unknown-pragmas"],
            is_python_module=False, verbose=False)
