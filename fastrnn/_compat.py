"""fastrnn's uses of torch internals that are not public API, and its policy of when to
call torch.nn's own LSTM, in one place: a torch upgrade that moves one breaks here (and in
tests/test_compat.py) rather than anywhere.

Besides what is below, the modules subclass torch.nn's RNN modules and use RNNBase's own
``_flat_weights``, ``_flat_weights_names`` and ``_update_flat_weights`` (tested by name).

- Dynamo refuses to trace any instance of torch.nn.RNN/GRU/LSTM (``allow_rnn``, a guard for
  torch's own modules, whose ``_VF`` kernels it cannot trace). fastrnn's modules subclass
  those classes, so that ``isinstance(m, torch.nn.LSTM)`` holds for user code, yet their
  forward is plain Python over custom ops that Dynamo traces without a graph break. So
  Dynamo's module wrapper gets ``allow_rnn`` for fastrnn's modules only, installed when
  Dynamo's builder is first imported (importing it at ``import fastrnn`` would cost ~1.3 s).
"""
import importlib.abc
import importlib.machinery
import sys
from typing import Callable, Tuple

import torch
import torch.autograd.forward_ad as forward_ad
from torch import _VF


def functorch_transform_active() -> bool:
    """A torch.func transform (grad, vmap, jacrev, ...) is tracing the call."""
    return torch._C._are_functorch_transforms_active()


def forward_ad_active() -> bool:
    """Inside ``torch.autograd.forward_ad.dual_level()``."""
    return getattr(forward_ad, "_current_level", -1) >= 0


def autocast_enabled_anywhere() -> bool:
    """Autocast is on for some device (one C call; the modules' common case is no)."""
    return torch._C._is_any_autocast_enabled()


def below_autograd():
    """Runs ops below the Autograd dispatch key (no graph is recorded), as generated code
    does; the eager op wrappers use it where no backward can follow."""
    return torch._C._AutoDispatchBelowAutograd()


# CPU inference (no backward to follow) where torch.nn's own LSTM was measured faster on a
# 2-core Xeon (docs/ops.md), from 4*hidden^2 weights of 1 MiB (hidden 512: torch 1.1-2x
# faster): with proj_size (fastrnn's recurrence runs over W_hh @ W_hr, hidden/proj times
# torch's multiply-adds) and on padded float32 batches (torch's oneDNN kernels). Training,
# and packed batches without projections, stay fused.
TORCH_LSTM_INFERENCE_FROM_WEIGHT_BYTES = 1 << 20
# ... and on padded float32 batches from batch x hidden = 2048 (batch 16 at hidden 128, 64 at
# hidden 32), where oneDNN's batched GEMMs beat the fused loop by 1.1-1.4x (1 thread; the
# envelope benchmark, benchmarks/results/envelope-cpu.json).
TORCH_LSTM_INFERENCE_FROM_BATCH_UNITS = 2048


def _torch_may_run(input) -> bool:
    """Whether a call may run torch.nn's own computation at all: on the CPU (where it was
    measured), and never under torch.compile (torch.nn's RNNs would break the graph), autocast
    (not measured) or torch.jit.trace (whose graph must not depend on the grad mode)."""
    return not (input.device.type != "cpu" or torch.compiler.is_compiling()
                or torch._C._is_any_autocast_enabled() or torch.jit.is_tracing())


def torch_lstm_is_faster(module, input, batch_sizes, hx) -> bool:
    """Whether ``module`` (a fastrnn.LSTM) should run torch.nn's LSTM for this call (see
    _torch_may_run)."""
    if not _torch_may_run(input):
        return False
    onednn_padded = (batch_sizes is None and input.dtype == torch.float32
                     and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
    if not (module.proj_size > 0 or onednn_padded):
        return False
    batch = input.size(0 if module.batch_first else 1) if input.dim() == 3 else 1
    large_batch = onednn_padded and batch * module.hidden_size >= TORCH_LSTM_INFERENCE_FROM_BATCH_UNITS
    if 4 * module.hidden_size ** 2 * input.element_size() < TORCH_LSTM_INFERENCE_FROM_WEIGHT_BYTES \
            and not large_batch:
        return False
    tensors = [input, *hx, *module._flat_weights]
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def torch_rnn_is_faster(module, input, batch_sizes, hx) -> bool:
    """Whether ``module`` (a fastrnn.RNN) should run torch.nn's RNN for this call: a padded
    float32 call of one step (the decoder and streaming pattern), where torch.nn's few ops
    cost less than fastrnn's fixed overhead (fused 0.71-0.98x at 1 thread, hidden 32-512,
    batch 1-256: the envelope benchmark; see _torch_may_run)."""
    if (not _torch_may_run(input) or batch_sizes is not None or input.dim() != 3
            or input.dtype != torch.float32):
        return False
    return input.size(1 if module.batch_first else 0) == 1


def torch_layers(module, input, batch_sizes, hx):
    """torch.nn's own computation for ``module``'s parameters: (output, h_n(, c_n))."""
    if module.mode == "LSTM":
        return torch_lstm(module, input, batch_sizes, hx)
    run = _VF.rnn_tanh if module.mode == "RNN_TANH" else _VF.rnn_relu
    return run(input, hx, module._flat_weights, module.bias, module.num_layers, module.dropout,
               module.training, module.bidirectional, module.batch_first)


def torch_lstm(module, input, batch_sizes, hx):
    """torch.nn.LSTM's own computation for ``module``'s parameters: (output, h_n, c_n)."""
    if batch_sizes is None:
        return _VF.lstm(input, hx, module._flat_weights, module.bias, module.num_layers,
                        module.dropout, module.training, module.bidirectional, module.batch_first)
    return _VF.lstm(input, batch_sizes, hx, module._flat_weights, module.bias, module.num_layers,
                    module.dropout, module.training, module.bidirectional)


DYNAMO_BUILDER = "torch._dynamo.variables.builder"

_module_types: Callable[[], Tuple[type, ...]] = lambda: ()


def _patch_builder(builder) -> None:
    variable_builder = builder.VariableBuilder
    wrap_module = variable_builder.wrap_module
    if getattr(wrap_module, "_fastrnn_allows_its_modules", False):
        return
    config = builder.config

    def wrap_fastrnn_module(self, value):
        if isinstance(value, _module_types()):
            with config.patch(allow_rnn=True):
                return wrap_module(self, value)
        return wrap_module(self, value)

    wrap_fastrnn_module._fastrnn_allows_its_modules = True
    variable_builder.wrap_module = wrap_fastrnn_module


class _PatchBuilderOnImport(importlib.abc.MetaPathFinder):
    """Runs _patch_builder right after Dynamo's builder module is executed."""

    def find_spec(self, name, path, target=None):
        if name != DYNAMO_BUILDER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch_builder(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_and_patch
        return spec


def let_dynamo_trace(module_types: Callable[[], Tuple[type, ...]]) -> None:
    """Lets torch.compile trace instances of ``module_types()`` (subclasses of torch.nn's
    RNN modules) like any other module."""
    global _module_types
    _module_types = module_types
    if DYNAMO_BUILDER in sys.modules:
        _patch_builder(sys.modules[DYNAMO_BUILDER])
    elif not any(isinstance(f, _PatchBuilderOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchBuilderOnImport())
