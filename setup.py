"""Builds fastrnn._C against the torch that is already installed.

Install with `pip install --no-build-isolation .` (see README.md): the
extension must be compiled against the same torch it will run with, so the
build has to see the installed torch rather than a fresh one in an isolated
build environment.

CUDA: the CUDA kernels are built whenever torch is a CUDA build and nvcc is
found (no GPU needed). CUDA_HOME is taken from the environment, else CUDA's
default install folder (/usr/local/cuda), else torch's guess. Architectures
follow TORCH_CUDA_ARCH_LIST; when it is unset and no GPU is visible, sm_80 and
sm_90 are built.

Environment switches:
  FASTRNN_CPU_ONLY=1  build without the CUDA kernels even where they could be built
  FASTRNN_NATIVE=0    do not add -mavx2 -mfma (-mavx512f) when the build machine has them
  FASTRNN_AVX512=0    AVX2 only on a machine with AVX-512 (the small per-step GEMM and the
                      pointwise loops then use 32-byte instead of 64-byte vectors)
  FASTRNN_DEBUG=1     -O0 -g
  FASTRNN_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer build of the C++ code
                      (-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -O1 -g, compile and link; CPU only). Python itself
                      is not instrumented, so run it with the ASan runtime preloaded:
                        LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
                        ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                        python -m pytest tests
                      (.ci/run does this in its sanitizer job). Build it in a separate checkout or
                      venv: an instrumented _C.so fails to load without the preloaded runtime.
"""
import glob
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
    """x86 SIMD flags when the build machine supports them (the build is from source).
    AVX-512 made the AG News shape's LSTM layer 10-20% faster and mid hidden sizes
    (80-112) up to 1.5x on a 2-core Xeon (README)."""
    if os.environ.get("FASTRNN_NATIVE", "1") == "0":
        return []
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return []
    simd = []
    if " avx2" in flags and " fma" in flags:
        simd = ["-mavx2", "-mfma"]
    if simd and " avx512f" in flags and os.environ.get("FASTRNN_AVX512", "1") == "1":
        simd.append("-mavx512f")
    return simd


def find_cuda_home():
    """The CUDA toolkit folder holding bin/nvcc, or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in candidates:
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.realpath(home)
    return None


def want_cuda():
    """The CUDA toolkit folder when the CUDA kernels are to be built, else None. Only a CUDA
    build of torch can run them: with a CPU-only torch they are skipped whatever nvcc is
    present, so nobody waits ~1.5 min for kernels that cannot run."""
    if os.environ.get("FASTRNN_CPU_ONLY", "0") == "1":
        print("fastrnn: FASTRNN_CPU_ONLY=1: building the CPU kernels only")
        return None
    if torch.version.cuda is None:
        print(f"fastrnn: torch {torch.__version__} is a CPU-only build: building the CPU "
              "kernels only")
        return None
    home = find_cuda_home()
    if home is None:
        print("fastrnn: torch is a CUDA build but nvcc was not found; building CPU only")
        return None
    print(f"fastrnn: torch {torch.__version__} is a CUDA {torch.version.cuda} build and nvcc is "
          f"in {home}: building the CUDA kernels too (FASTRNN_CPU_ONLY=1 skips them)")
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported and when it builds;
    # point both at the toolkit found (nvcc on PATH may be a link outside it).
    import torch.utils.cpp_extension as cpp_extension

    os.environ["CUDA_HOME"] = home
    cpp_extension.CUDA_HOME = home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    return home


def nvidia_wheel_includes():
    """Headers shipped in torch's nvidia-* wheels (cublas_v2.h, cusparse.h, ...)."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    return sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))


def extensions():
    debug = os.environ.get("FASTRNN_DEBUG", "0") == "1"
    sanitize = os.environ.get("FASTRNN_SANITIZE", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    san = []
    if sanitize:
        opt = ["-O1", "-g"]
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer"]
    # -fno-trapping-math lets GCC if-convert the branch-free activations and
    # vectorise the pointwise loops; it changes no result (FP traps are off anyway).
    cxx = opt + san + ["-fopenmp", "-fno-trapping-math"] + cpu_flags()
    sources = ["csrc/ops.cpp", "csrc/layer.cpp", "csrc/batch_order.cpp", "csrc/stack.cpp",
               "csrc/recurrence.cpp", "csrc/cells.cpp", "csrc/build_info.cpp", "csrc/packing.cpp",
               "csrc/cpu/recurrence_cpu.cpp", "csrc/layer_norm_ops.cpp",
               "csrc/cpu/layer_norm_cpu.cpp", "csrc/layer_norm_buffers.cpp"]
    kwargs = dict(extra_link_args=["-fopenmp"] + san, py_limited_api=False)
    if sanitize:
        print("fastrnn: FASTRNN_SANITIZE=1: ASan+UBSan build, CPU only")
    elif want_cuda():
        from torch.utils.cpp_extension import CUDAExtension

        defines = ["-DFASTRNN_WITH_CUDA"]
        return [CUDAExtension(
            "fastrnn._C",
            sources + ["csrc/cuda/recurrence_cuda.cu", "csrc/cuda/persistent.cu",
                       "csrc/cuda/path_info.cu", "csrc/cuda/layer_norm_cuda.cu"],
            include_dirs=nvidia_wheel_includes(),
            extra_compile_args={"cxx": cxx + defines, "nvcc": opt + defines},
            **kwargs,
        )]
    return [CppExtension("fastrnn._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)]


def version():
    """fastrnn/__init__.py's __version__ (its one home)."""
    with open(os.path.join(ROOT, "fastrnn", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("fastrnn/__init__.py has no __version__")


setup(
    name="fastrnn",
    version=version(),
    description="Fused packed-sequence LSTM/GRU/RNN kernels for PyTorch",
    packages=find_packages(include=["fastrnn", "fastrnn.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "tqdm"],
    extras_require={"plot": ["matplotlib"],
                    "test": ["pytest", "hypothesis", "expecttest", "numpy", "ninja"]},
    entry_points={"console_scripts": ["fastrnn-agnews = fastrnn.agnews.cli:main"]},
)
