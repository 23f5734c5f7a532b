"""The AG News classifiers of the PyTorch RNN tutorial, on either backend.

    rnn            Embedding -> RNN(batch_first) -> Linear(mean of the outputs over time), padded
    lstm           Embedding (randn - 0.5) -> LSTM -> Linear(h_n[-1]), padded
    lstm-packed    as lstm, on pack_padded_sequence(..., enforce_sorted=False)
    gru-packed     as lstm-packed with a GRU
    bilstm-packed  as lstm-packed with 2 bidirectional layers, Linear(h_n of both directions)
    lnlstm-packed  as lstm-packed with fastrnn.LayerNormLSTM (fastrnn only: torch.nn has none)

``weight_drop`` and ``zoneout`` (fastrnn only) regularise the recurrent layer (fastrnn.LSTM's
options of the same names).

``backend`` picks torch.nn's or fastrnn's recurrent module; both are built in
the same order from the same random stream, so one seed gives one set of
initial weights, and their state_dicts are interchangeable.
"""
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .timing import RecurrentClock

# name -> (mode, layers, bidirectional, packed)
MODELS = {
    "rnn": ("RNN", 1, False, False),
    "lstm": ("LSTM", 1, False, False),
    "lstm-packed": ("LSTM", 1, False, True),
    "gru-packed": ("GRU", 1, False, True),
    "bilstm-packed": ("LSTM", 2, True, True),
    "lnlstm-packed": ("LayerNormLSTM", 1, False, True),
}
# Models and options torch.nn has no counterpart of.
FASTRNN_ONLY_MODES = ("LayerNormLSTM",)
BACKENDS = ("fastrnn", "torch")


def recurrent_class(mode: str, backend: str):
    if backend == "torch":
        if mode in FASTRNN_ONLY_MODES:
            raise ValueError(f"torch.nn has no {mode}: it runs with backend fastrnn only")
        return getattr(nn, mode)
    if backend == "fastrnn":
        import fastrnn

        return getattr(fastrnn, mode)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


class TextClassifier(nn.Module):
    def __init__(self, model: str, vocab_size: int, embed_dim: int = 64, hidden_dim: int = 32,
                 num_classes: int = 4, backend: str = "fastrnn", sparse_embedding: bool = False,
                 weight_drop: float = 0.0, zoneout: float = 0.0):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        mode, layers, bidirectional, packed = MODELS[model]
        self.model, self.mode, self.packed = model, mode, packed
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim, sparse=sparse_embedding)
        if mode != "RNN":  # the tutorial's LSTM classifiers start from randn - 0.5
            with torch.no_grad():
                self.embedding.weight.copy_(torch.randn_like(self.embedding.weight) - 0.5)
        regularisers = {name: p for name, p in (("weight_drop", weight_drop),
                                                ("zoneout", zoneout)) if p}
        if regularisers and backend != "fastrnn":
            raise ValueError(f"torch.nn has no {' or '.join(regularisers)}: "
                             "they run with backend fastrnn only")
        self.rnn = recurrent_class(mode, backend)(
            embed_dim, hidden_dim, num_layers=layers, batch_first=True, bidirectional=bidirectional,
            **regularisers)
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
        h_n = state[0] if isinstance(state, tuple) else state  # (h_n, c_n) of an LSTM
        features = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        return self.fc(features)

    def _recurrent(self, x):
        clock = self.clock
        if clock is None or not torch.is_grad_enabled():
            return self.rnn(x)
        clock.watch(x, is_input=True)
        start = clock.now()
        output, state = self.rnn(x)
        clock.forward_s += clock.now() - start
        clock.watch(output, is_input=False)
        clock.watch(state, is_input=False)
        return output, state


def build_model(model: str, vocab_size: int, embed_dim: int = 64, hidden_dim: int = 32,
                num_classes: int = 4, backend: str = "fastrnn", seed: Optional[int] = None,
                sparse_embedding: bool = False, weight_drop: float = 0.0, zoneout: float = 0.0):
    """A classifier whose initial weights depend only on ``seed`` (not on backend)."""
    if seed is not None:
        torch.manual_seed(seed)
    return TextClassifier(model, vocab_size, embed_dim, hidden_dim, num_classes, backend,
                          sparse_embedding, weight_drop, zoneout)
