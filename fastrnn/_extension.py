"""Loads the compiled extension fastrnn._C (which registers torch.ops.fastrnn.*), with an
error that says what to do when it is missing or does not fit the installed torch."""
import importlib
import os

import torch

_INSTALL = 'pip install --no-build-isolation -e ".[test]"'


def _missing_message(error: Exception) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return (
        f"fastrnn: its compiled extension fastrnn._C could not be loaded from {here} "
        f"({type(error).__name__}: {error}).\n"
        "If this is a source checkout, build the extension in place (from the repository "
        f"root, with torch installed first):\n    {_INSTALL}\n"
        "If you built it against another torch than the one now installed "
        f"({torch.__version__}), rebuild it with the same command."
    )


def load():
    try:
        return importlib.import_module("fastrnn._C")
    except ImportError as error:
        raise ImportError(_missing_message(error)) from error


_C = load()
