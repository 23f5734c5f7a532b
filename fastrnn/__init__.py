"""fastrnn: fused packed-sequence LSTM, GRU and Elman RNN kernels for PyTorch."""
from . import ops
from .ops import gru, lstm, rnn_relu, rnn_tanh

__all__ = ["ops", "lstm", "gru", "rnn_tanh", "rnn_relu"]
__version__ = "0.1.0"
