"""Loads the compiled extension fastrnn._C (which registers torch.ops.fastrnn.*), with an
error that says what to run when it is missing or was built against another torch."""
import importlib
import json
import os
import shlex
from importlib import metadata

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def reinstall_command() -> str:
    """The command that (re)builds fastrnn against the running torch: from the source tree
    this package lies in, else from where pip installed it from (its direct_url.json).
    --no-cache-dir: pip caches the wheels it builds whatever torch they were built against."""
    origin, editable = None, False
    if os.path.exists(os.path.join(ROOT, "pyproject.toml")):
        origin, editable = ROOT, True  # a checkout, installed editable or not yet installed
    else:
        try:
            dist = metadata.distribution("fastrnn")
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
            if direct.get("url", "").startswith("file://"):
                origin = direct["url"][len("file://"):]
        except (metadata.PackageNotFoundError, ValueError):
            pass
    command = "pip install --force-reinstall --no-deps --no-cache-dir"
    if origin is None or origin.endswith(".whl"):  # a built wheel cannot change its torch
        return (f"{command} --no-binary fastrnn fastrnn  (or, from fastrnn's source folder, "
                f"{command} .)")
    return f"{command} {'-e ' if editable else ''}{shlex.quote(origin)}"


def _missing_message(error: Exception) -> str:
    return (
        f"fastrnn: its compiled extension fastrnn._C could not be loaded from {HERE} "
        f"({type(error).__name__}: {error}).\n"
        "Build it against the installed torch "
        f"({torch.__version__}) with:\n    {reinstall_command()}"
    )


def build_record() -> dict:
    """fastrnn._C's own record of its build (csrc/build_info.cpp), e.g. ``torch``: the
    version it was compiled against."""
    return dict(item.split("=", 1) for item in torch.ops.fastrnn.build_info().split(";") if item)


def refuse_other_torch(built: str) -> None:
    """ImportError, with the command that fixes it, when fastrnn._C was built against torch
    ``built`` and another torch runs: such an extension can crash or compute wrong results."""
    if built != torch.__version__.split("+")[0]:
        raise ImportError(
            f"fastrnn: fastrnn._C in {HERE} was built against torch {built}, but torch "
            f"{torch.__version__} is running. Rebuild it with:\n    {reinstall_command()}")


def load():
    try:
        module = importlib.import_module("fastrnn._C")
    except ImportError as error:
        raise ImportError(_missing_message(error)) from error
    refuse_other_torch(build_record()["torch"])
    return module


_C = load()
