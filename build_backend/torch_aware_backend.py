"""fastrnn's PEP 517 build backend: setuptools', compiling against the torch of the
environment the package is installed into, even inside an isolated build.

fastrnn's extension must be built against the very torch it runs with (its C++ ABI and
operator schemas), so torch cannot be a build requirement: pip would install a fresh copy,
perhaps another version or the 5 GB CUDA build, into the isolated build environment. pip
runs each hook with the interpreter it installs into and isolates it only through
PYTHONPATH and PYTHONNOUSERSITE; asking that interpreter without them where its torch
lives, and putting that folder on this process's path (after the build environment's own
packages), builds against the user's torch. uv runs the hooks in a separate virtual
environment: the project's pyproject.toml names fastrnn in uv's no-build-isolation list, so
uv runs them in the target environment, where torch imports directly.
"""
import os
import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import build_sdist, get_requires_for_build_sdist  # noqa: F401

_ASK = "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"


def _candidates():
    """Interpreters that may hold the user's torch: the one running this hook (pip's
    target), then the active virtual or conda environment's."""
    yield sys.executable
    for prefix in (os.environ.get("VIRTUAL_ENV"), os.environ.get("CONDA_PREFIX")):
        if prefix:
            yield os.path.join(prefix, "Scripts" if os.name == "nt" else "bin", "python")


def _torch_folder():
    """The site-packages folder holding the target environment's torch, or None."""
    try:
        import torch  # a build without isolation: the environment's own torch
        return os.path.dirname(os.path.dirname(torch.__file__))
    except ImportError:
        pass
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    for python in _candidates():
        if not os.path.exists(python):
            continue
        try:
            found = subprocess.run([python, "-c", _ASK], env=env, capture_output=True, text=True,
                                   timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip().splitlines()[-1]
    return None


def _use_target_torch():
    folder = _torch_folder()
    if folder is None:
        sys.exit(f"fastrnn: no torch found for {sys.executable}: fastrnn compiles against the "
                 "torch it will run with, so install torch first (e.g. `pip install torch "
                 "--index-url https://download.pytorch.org/whl/cpu`), then install fastrnn")
    if folder not in sys.path:
        sys.path.append(folder)


def get_requires_for_build_wheel(config_settings=None):
    _use_target_torch()  # fail here, before anything is built, when there is no torch
    return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    _use_target_torch()
    return _setuptools.get_requires_for_build_editable(config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _use_target_torch()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _use_target_torch()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _use_target_torch()
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _use_target_torch()
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)
