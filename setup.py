"""Builds fastrnn._C against the torch that is already installed.

Install with `pip install --no-build-isolation .` (see README.md): the
extension must be compiled against the same torch it will run with, so the
build has to see the installed torch rather than a fresh one in an isolated
build environment.

Environment switches:
  FASTRNN_NATIVE=0    do not add -mavx2 -mfma when the build machine has them
  FASTRNN_DEBUG=1     -O0 -g
"""
import os
import platform
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:  # pragma: no cover - only hit in an isolated build env
    sys.exit(
        "fastrnn: torch is not importable in the build environment.\n"
        "fastrnn compiles against your installed torch; install torch first, then run\n"
        "    pip install --no-build-isolation .\n"
        "(plain `pip install .` builds in an isolated environment without your torch)."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def cpu_flags():
    """x86 SIMD flags when the build machine supports them (the build is from source)."""
    if os.environ.get("FASTRNN_NATIVE", "1") == "0":
        return []
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return []
    if " avx2" in flags and " fma" in flags:
        return ["-mavx2", "-mfma"]
    return []


def extensions():
    debug = os.environ.get("FASTRNN_DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -fno-trapping-math lets GCC if-convert the branch-free activations and
    # vectorise the pointwise loops; it changes no result (FP traps are off anyway).
    cxx = opt + ["-fopenmp", "-fno-trapping-math", "-std=c++17"] + cpu_flags()
    sources = [
        "csrc/ops.cpp",
        "csrc/cpu/recurrence_cpu.cpp",
    ]
    return [
        CppExtension(
            "fastrnn._C",
            sources,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
            py_limited_api=False,
        )
    ]


setup(
    name="fastrnn",
    version="0.1.0",
    description="Fused packed-sequence LSTM/GRU/RNN kernels for PyTorch",
    packages=find_packages(include=["fastrnn", "fastrnn.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch>=2.4"],
)
