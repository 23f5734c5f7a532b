"""Builds fastrnn._C against the torch of the environment fastrnn is installed into.

The package's metadata is static, in pyproject.toml; this file holds only the extension.
`pip install .` (or `-e .`) runs it through the in-tree build backend
(build_backend/torch_aware_backend.py), which puts the target environment's torch on the
path even inside pip's isolated build. Compiled objects are kept in build/temp, so a
second install (or an editable rebuild) recompiles only what changed.

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
                        LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
                        ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \\
                        python -m pytest tests
                      (.ci/run does this in its sanitizer job). Build it in a separate checkout or
                      venv: an instrumented _C.so fails to load without the preloaded runtime.
"""
import glob
import os
import platform
import sys

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:
    torch = None

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


def sources_matching(*patterns):
    """The sources under csrc/ (paths relative to the root, as setuptools wants them)."""
    return sorted(os.path.relpath(path, ROOT) for pattern in patterns
                  for path in glob.glob(os.path.join(ROOT, pattern)))


def extensions():
    debug = os.environ.get("FASTRNN_DEBUG", "0") == "1"
    sanitize = os.environ.get("FASTRNN_SANITIZE", "0") == "1"
    # -g0: Python's own flags ask for -g, which makes the build slower and _C.so 3x larger.
    opt = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    san = []
    if sanitize:
        opt = ["-O1", "-g"]
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer"]
    # -fno-trapping-math lets GCC if-convert the branch-free activations and
    # vectorise the pointwise loops; it changes no result (FP traps are off anyway).
    cxx = opt + san + ["-fopenmp", "-fno-trapping-math"] + cpu_flags()
    sources = sources_matching("csrc/*.cpp", "csrc/cpu/*.cpp")
    kwargs = dict(extra_link_args=["-fopenmp"] + san, py_limited_api=False)
    if sanitize:
        print("fastrnn: FASTRNN_SANITIZE=1: ASan+UBSan build, CPU only")
    elif want_cuda():
        from torch.utils.cpp_extension import CUDAExtension

        defines = ["-DFASTRNN_WITH_CUDA"]
        return [CUDAExtension(
            "fastrnn._C",
            sources + sources_matching("csrc/cuda/*.cu"),
            include_dirs=nvidia_wheel_includes(),
            extra_compile_args={"cxx": cxx + defines,
                                "nvcc": [o for o in opt if o != "-g0"] + defines},
            **kwargs,
        )]
    return [CppExtension("fastrnn._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)]


def persistent_build_ext():
    """torch's BuildExtension (ninja) with a persistent object folder, build/temp, instead of
    the fresh temporary one each (editable) install gets: ninja then recompiles only the
    sources whose command line or inputs (headers included) changed. ``force``: setuptools'
    own up-to-date test sees no headers, so it always hands the build to ninja."""

    class BuildExt(BuildExtension.with_options(use_ninja=True)):
        def finalize_options(self):
            super().finalize_options()
            self.build_temp = os.path.join(ROOT, "build", "temp")
            self.force = True

    return BuildExt


WHEEL_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop"}

if torch is None:
    if WHEEL_COMMANDS & set(sys.argv[1:]):
        sys.exit("fastrnn: torch is not importable: fastrnn compiles against the torch it will "
                 "run with, so install torch first (`pip install torch`), then `pip install .`")
    setup()  # metadata or an sdist: no extension to describe
else:
    print(f"fastrnn: building against torch {torch.__version__} in "
          f"{os.path.dirname(os.path.dirname(torch.__file__))}")
    setup(ext_modules=extensions(), cmdclass={"build_ext": persistent_build_ext()})
