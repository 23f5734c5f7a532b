"""The AG News classifiers of the PyTorch RNN tutorial, on either backend.

    rnn            Embedding -> RNN(batch_first) -> Linear(mean of the outputs over time), padded
    lstm           Embedding (randn - 0.5) -> LSTM -> Linear(h_n[-1]), padded
    lstm-packed    as lstm, on pack_padded_sequence(..., enforce_sorted=False)
    gru-packed     as lstm-packed with a GRU
    bilstm-packed  as lstm-packed with 2 bidirectional layers, Linear(h_n of both directions)

``backend`` picks torch.nn's or fastrnn's recurrent module; both are built in
the same order from the same random stream, so one seed gives one set of
initial weights, and their state_dicts are interchangeable.
"""
import time
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

# name -> (mode, layers, bidirectional, packed)
MODELS = {
    "rnn": ("RNN", 1, False, False),
    "lstm": ("LSTM", 1, False, False),
    "lstm-packed": ("LSTM", 1, False, True),
    "gru-packed": ("GRU", 1, False, True),
    "bilstm-packed": ("LSTM", 2, True, True),
}
BACKENDS = ("fastrnn", "torch")


def recurrent_class(mode: str, backend: str):
    if backend == "torch":
        return getattr(nn, mode)
    if backend == "fastrnn":
        import fastrnn

        return getattr(fastrnn, mode)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


class RecurrentClock:
    """Wall time spent in the recurrent layer, forward and backward.

    Backward time runs from the first gradient reaching the layer's outputs to
    the gradient of its input, stamped by identity autograd nodes on both sides.
    On CUDA each stamp synchronises the device.
    """

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.reset()

    def reset(self):
        self.forward_s = 0.0
        self.backward_s = 0.0
        self._backward_start: Optional[float] = None

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s


class _BackwardStamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clock, is_input, x):
        ctx.clock, ctx.is_input = clock, is_input
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        clock = ctx.clock
        if ctx.is_input:
            if clock._backward_start is not None:
                clock.backward_s += clock.now() - clock._backward_start
                clock._backward_start = None
        elif clock._backward_start is None:
            clock._backward_start = clock.now()
        return None, None, grad


def _stamp(clock, is_input, x):
    if isinstance(x, PackedSequence):
        return x._replace(data=_stamp(clock, is_input, x.data))
    if isinstance(x, tuple):
        return tuple(_stamp(clock, is_input, t) for t in x)
    if not x.requires_grad:
        return x
    return _BackwardStamp.apply(clock, is_input, x)


class TextClassifier(nn.Module):
    def __init__(self, model: str, vocab_size: int, embed_dim: int = 64, hidden_dim: int = 32,
                 num_classes: int = 4, backend: str = "fastrnn"):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        mode, layers, bidirectional, packed = MODELS[model]
        self.model, self.mode, self.packed = model, mode, packed
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        if mode != "RNN":  # the tutorial's LSTM classifiers start from randn - 0.5
            with torch.no_grad():
                self.embedding.weight.copy_(torch.randn_like(self.embedding.weight) - 0.5)
        self.rnn = recurrent_class(mode, backend)(
            embed_dim, hidden_dim, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        features = hidden_dim * (2 if bidirectional else 1)
        self.fc = nn.Linear(features, num_classes)
        self.clock: Optional[RecurrentClock] = None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``tokens`` [batch, max_len] padded ids, ``lengths`` [batch] (CPU int64)."""
        x = self.embedding(tokens)
        if self.packed:
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, state = self._recurrent(x)
        if self.mode == "RNN":
            return self.fc(output.mean(dim=1))
        h_n = state[0] if self.mode == "LSTM" else state
        features = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        return self.fc(features)

    def _recurrent(self, x):
        clock = self.clock
        if clock is None or not torch.is_grad_enabled():
            return self.rnn(x)
        start = clock.now()
        output, state = self.rnn(_stamp(clock, True, x))
        clock.forward_s += clock.now() - start
        return _stamp(clock, False, output), _stamp(clock, False, state)


def build_model(model: str, vocab_size: int, embed_dim: int = 64, hidden_dim: int = 32,
                num_classes: int = 4, backend: str = "fastrnn", seed: Optional[int] = None):
    """A classifier whose initial weights depend only on ``seed`` (not on backend)."""
    if seed is not None:
        torch.manual_seed(seed)
    return TextClassifier(model, vocab_size, embed_dim, hidden_dim, num_classes, backend)
