"""fastrnn: fused packed-sequence LSTM, GRU and Elman RNN kernels for PyTorch.

    fastrnn.LSTM / GRU / RNN       drop-in torch.nn modules
    fastrnn.LayerNormLSTM / LayerNormGRU   the same with layer normalisation (beyond torch.nn)
    fastrnn.convert(model)         swap torch.nn recurrent layers for fastrnn's (to_torch: back)
    fastrnn.lstm / gru / rnn_tanh / rnn_relu   the fused one-layer ops (fastrnn.ops)
    fastrnn.pack_padded_sequence / pad_packed_sequence   torch.nn.utils.rnn's, one gather each
"""
from importlib import metadata as _metadata

from . import functional, ops
from .layer_norm import LayerNormGRU, LayerNormLSTM
from .modules import GRU, LSTM, RNN, convert, to_torch
from .ops import gru, input_projection, lstm, rnn_relu, rnn_tanh
from .packing import pack_padded_sequence, pad_packed_sequence

__all__ = ["LSTM", "GRU", "RNN", "LayerNormLSTM", "LayerNormGRU", "convert", "to_torch", "ops", "functional",
           "lstm", "gru", "rnn_tanh", "rnn_relu", "input_projection", "pack_padded_sequence",
           "pad_packed_sequence"]
try:
    __version__ = _metadata.version("fastrnn")  # its one home: pyproject.toml
except _metadata.PackageNotFoundError:  # a checkout run without installing it
    __version__ = "0+unknown"
