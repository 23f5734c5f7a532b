"""What this build of fastrnn is and what it would do on this machine (``python -m fastrnn``).

A user reporting a bug pastes ``python -m fastrnn``'s output: versions, what was compiled
in, the visible GPU and which CUDA path each cell takes there.
"""
import os
import platform
import sys
from typing import Dict, List

import torch

from . import __version__
from ._extension import build_record
from .cells import CELLS
# Hidden sizes python -m fastrnn shows the CUDA path for (batch 16, the tutorial's).
SHOWN_HIDDEN_SIZES = (32, 128, 256, 512)


def build_info() -> Dict[str, str]:
    """The compiled extension's own record of its build (csrc/build_info.cpp): ``torch`` (the
    version it was built against), ``cuda``, ``avx2``, ``avx512``, ``openmp``, ``sanitize``,
    ``debug`` ("1"/"0") and ``compiler``; with CUDA kernels also ``cudart``."""
    info = build_record()
    if info["cuda"] == "1":
        info.update(item.split("=", 1)
                    for item in torch.ops.fastrnn.cuda_build_info().split(";"))
    return info


def cuda_path(cell: str, hidden_size: int, dtype: torch.dtype = torch.float32,
              batch: int = 16) -> str:
    """``"persistent"`` or ``"per_step"``: the CUDA path (docs/cuda.md) a layer of ``cell`` with
    this hidden size, dtype and batch takes on the current GPU (``FASTRNN_CUDA_PATH`` is
    honoured). Needs CUDA kernels in the build and a visible GPU."""
    if not hasattr(torch.ops.fastrnn, "cuda_path"):
        raise RuntimeError("fastrnn: this build has no CUDA kernels (see python -m fastrnn)")
    if not torch.cuda.is_available():
        raise RuntimeError("fastrnn: no CUDA GPU is visible")
    return torch.ops.fastrnn.cuda_path(cell, hidden_size, dtype, batch)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _yes(flag: str) -> str:
    return "yes" if flag == "1" else "no"


def describe() -> str:
    """The report ``python -m fastrnn`` prints."""
    info = build_info()
    lines: List[str] = [
        f"fastrnn {__version__} ({os.path.dirname(os.path.abspath(__file__))})",
        f"python {platform.python_version()} on {platform.platform()}",
        f"torch: runs with {torch.__version__}, fastrnn._C built against {info['torch']}",
        f"compiled in: AVX2+FMA {_yes(info['avx2'])}, AVX-512 {_yes(info['avx512'])}, "
        f"OpenMP {_yes(info['openmp'])}, CUDA kernels {_yes(info['cuda'])}"
        + (f" (CUDA runtime {int(info['cudart']) // 1000}.{int(info['cudart']) % 1000 // 10})"
           if info["cuda"] == "1" else
           f" (torch CUDA: {torch.version.cuda or 'none, a CPU-only torch'})")
        + (", sanitizers (ASan+UBSan)" if info["sanitize"] == "1" else "")
        + (", debug build" if info["debug"] == "1" else ""),
        f"compiler: {info['compiler']}",
        f"CPU: {cpu_name()}, {os.cpu_count()} logical cores, "
        f"{torch.get_num_threads()} torch threads",
    ]
    if not torch.cuda.is_available():
        lines.append("GPU: none visible" + (" (torch is CPU-only)" if torch.version.cuda is None
                                            else ""))
        return "\n".join(lines)
    for index in range(torch.cuda.device_count()):
        prop = torch.cuda.get_device_properties(index)
        lines.append(f"GPU {index}: {prop.name}, sm_{prop.major}{prop.minor}, "
                     f"{prop.multi_processor_count} SMs, {prop.total_memory / 2**30:.0f} GiB")
    if info["cuda"] != "1":
        lines.append("CUDA paths: none (this build has no CUDA kernels: the GPU is unused)")
        return "\n".join(lines)
    lines.append(f"CUDA path on GPU {torch.cuda.current_device()}, batch 16 "
                 f"(FASTRNN_CUDA_PATH={os.environ.get('FASTRNN_CUDA_PATH', 'auto')}):")
    for dtype in (torch.float32, torch.bfloat16):
        for cell in CELLS:
            paths = ", ".join(f"{hidden}: {cuda_path(cell, hidden, dtype)}"
                              for hidden in SHOWN_HIDDEN_SIZES)
            lines.append(f"  {cell:8s} {str(dtype).replace('torch.', ''):8s} hidden {paths}")
    return "\n".join(lines)


def main() -> int:
    try:
        print(describe())
    except RuntimeError as error:  # e.g. FASTRNN_CUDA_PATH set to something invalid
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
