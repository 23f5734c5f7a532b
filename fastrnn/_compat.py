"""fastrnn's uses of torch internals that are not public API, in one place, so that a torch
upgrade that moves one breaks here (and in tests/test_compat.py) rather than anywhere.

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
