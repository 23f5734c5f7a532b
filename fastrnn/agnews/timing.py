"""Timing of the recurrent layer inside a training step (the "recurrent s" of the results)."""
import time
from typing import Optional

import torch
from torch.nn.utils.rnn import PackedSequence


class RecurrentClock:
    """Wall time spent in the recurrent layer, forward and backward.

    Backward time runs from the first gradient reaching the layer's outputs to
    the gradient of its input, observed with tensor hooks on both sides (cheap:
    no extra autograd nodes). On CUDA each reading synchronises the device.
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

    def _output_grad(self, grad):
        if self._backward_start is None:
            self._backward_start = self.now()

    def _input_grad(self, grad):
        if self._backward_start is not None:
            self.backward_s += self.now() - self._backward_start
            self._backward_start = None

    def watch(self, tensors, is_input: bool):
        """Hook the tensors (a tensor, PackedSequence or tuple of them) that need grad."""
        if isinstance(tensors, PackedSequence):
            tensors = tensors.data
        for t in tensors if isinstance(tensors, tuple) else (tensors,):
            if t.requires_grad:
                t.register_hook(self._input_grad if is_input else self._output_grad)
