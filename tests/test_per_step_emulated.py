"""The per-step CUDA path (csrc/cuda/per_step.cuh), compiled for the CPU with
tests/emulation/cuda_shim.h, against the CPU ops.

No GPU needed: the very time loops of the CUDA path (live rows per step, reverse walks,
which rows take their previous state from h0/c0, workspace rows with and without
keep_workspace, the layout of the GEMM operands) and its pointwise kernels run on CPU
tensors, every CUDA thread one after another. The GEMMs are ATen's CPU ones here (cuBLAS
on a GPU, through the same ATen calls). tests/test_cuda.py checks the real thing on a GPU.
"""
import hashlib
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from fastrnn.ops import CELLS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "tests/emulation/per_step_emulator.cpp", ROOT / "csrc/recurrence.cpp"]
HEADERS = [ROOT / "tests/emulation/cuda_shim.h", ROOT / "tests/emulation/emulated_launch.h",
           ROOT / "csrc/cuda/per_step.cuh",
           ROOT / "csrc/recurrence.h", ROOT / "csrc/cell_math.h", ROOT / "csrc/cells.h",
           ROOT / "csrc/raw_gemm.h"]
CELL_CODES = {cell: code for code, cell in enumerate(CELLS)}  # CellKind, csrc/cells.h
CASES = [(6, 5, 5, 3, 1), (3, 3, 3), (1,), (5, 2, 2, 2, 1, 1, 1)]


@pytest.fixture(scope="module")
def emulated():
    # The name carries a digest of every source and header: torch's extension cache
    # would otherwise reuse a build after a header changed.
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES + HEADERS)).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpp_extension.load(
            name=f"fastrnn_per_step_emulator_{digest[:12]}", sources=[str(p) for p in SOURCES],
            extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "tests/emulation")],
            extra_cflags=["-std=c++20", "-O1", "-Wno-unknown-pragmas"],
            is_python_module=False, verbose=False)
    return torch.ops.fastrnn_per_step_emulated


@pytest.mark.parametrize("zoneout", [False, True], ids=["plain", "zoneout"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("cell", list(CELL_CODES))
def test_per_step_path_matches_cpu_ops(emulated, cell, dtype, zoneout):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    gates, saved, has_cell = CELLS[cell]
    gen = torch.Generator().manual_seed(CELL_CODES[cell])
    for H in (5, 11):
        for case_index, batch_sizes in enumerate(CASES):
            for reverse in (False, True):
                with_bias = (case_index + reverse) % 2 == 0
                check_one(emulated, cell, dtype, gates, saved, has_cell, H, batch_sizes,
                          reverse, with_bias, gen, tol, zoneout)


def zoneout_mask(N, H, has_cell, dtype, gen):
    """Keep weights of zoneout: 0/1 draws in one half of the tokens, any in [0, 1) in the
    other (the ops take both: training masks and eval's p)."""
    u = torch.rand(N, (2 if has_cell else 1) * H, generator=gen, dtype=torch.float64)
    mask = torch.where(torch.arange(N).unsqueeze(1) % 2 == 0, (u < 0.5).double(), u)
    return mask.to(dtype)


def check_one(emulated, cell, dtype, gates, saved, has_cell, H, batch_sizes, reverse, with_bias,
              gen, tol, zoneout=False):
    bs = torch.tensor(batch_sizes, dtype=torch.int64)
    N, B, GH = int(bs.sum()), batch_sizes[0], gates * H

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul(scale).to(dtype)

    gx, weight, h0 = rand(N, GH), rand(GH, H, scale=0.5), rand(B, H)
    bias = rand(GH, scale=0.3) if with_bias else None
    c0 = rand(B, H) if has_cell else torch.empty(0, dtype=dtype)
    cell_args = [c0] if has_cell else []
    mask = zoneout_mask(N, H, has_cell, dtype, gen) if zoneout else None
    where = (f"{cell} H={H} batch_sizes={batch_sizes} reverse={reverse} bias={with_bias} "
             f"zoneout={zoneout}")

    forward_op = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    want = forward_op(gx, bs, weight, bias, h0, *cell_args, reverse, True, mask)
    want_out, want_h, want_ws = want[0], want[1], want[-1]
    code = CELL_CODES[cell]
    got = emulated.forward(code, gx, bs, weight, bias, h0, c0, reverse, True, mask)
    pairs = [("output", got[0], want_out), ("h_n", got[1], want_h), ("workspace", got[3], want_ws)]
    if has_cell:
        pairs.append(("c_n", got[2], want[2]))
    # Without keep_workspace: the same results, an empty workspace.
    lean = emulated.forward(code, gx, bs, weight, bias, h0, c0, reverse, False, mask)
    pairs += [("output without workspace", lean[0], want_out),
              ("h_n without workspace", lean[1], want_h)]
    assert lean[3].numel() == 0, where
    for name, g, w in pairs:
        torch.testing.assert_close(g, w, **tol, msg=lambda m, n=name: f"{n}, {where}: {m}")

    gout, gh_n = rand(N, H), rand(B, H)
    gc_n = rand(B, H) if has_cell else torch.empty(0, dtype=dtype)
    backward_op = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    grads_in = [gout, gh_n] + ([gc_n] if has_cell else [])
    expect = backward_op(*grads_in, bs, weight, h0, *cell_args, want_out, want_ws, reverse,
                         mask)
    # The emulated backward from the emulated forward's own output and workspace.
    result = emulated.backward(code, gout, gh_n, gc_n, bs, weight, h0, c0, got[0], got[3],
                               reverse, mask)
    names = ["grad_input_proj", "grad_weight_hh", "grad_bias_hh", "grad_h0", "grad_c0"]
    for name, g, w in zip(names, result, expect):
        torch.testing.assert_close(g, w, **tol, msg=lambda m, n=name: f"{n}, {where}: {m}")


# ATen ops that launch one CUDA kernel each on a GPU (cuBLAS GEMMs counted as one: cuBLAS
# may add a split-K reduction, which only a GPU profile shows; bench_gpu.py records one).
# Not aten::fill_: the CPU sum fills its output first, the CUDA one does not.
LAUNCHING_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::copy_", "aten::sum",
                 "aten::add_", "aten::mul"}


def count_launches(emulated, fn):
    """Device work items of fn() on the emulated per-step path: pointwise kernel launches
    plus launching ATen ops (GEMMs, copies, reductions)."""
    emulated.launches()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    aten = sum(1 for e in prof.events() if e.name in LAUNCHING_OPS)
    return emulated.launches() + aten


@pytest.mark.parametrize("cell", list(CELL_CODES))
def test_per_step_launches_per_time_step(emulated, cell):
    # Forward: one GEMM and one pointwise kernel per step (bias_hh added in the pointwise
    # kernel), plus copying h0 (and c0) into the running state. Backward: one pointwise
    # kernel and one GEMM per step, plus copying grad_h_n (and grad_c_n), and after the
    # loop one GEMM (grad_weight_hh) and one reduction (grad_bias_hh).
    # benchmarks/results/gpu-launch-counts.md tabulates these.
    gates, saved, has_cell = CELLS[cell]
    code, H = CELL_CODES[cell], 4
    state_copies = 2 if has_cell else 1
    for batch_sizes in ((3, 3, 3, 3), (5, 4, 2, 2, 1, 1, 1)):
        T = len(batch_sizes)
        bs = torch.tensor(batch_sizes)
        N, B = int(bs.sum()), batch_sizes[0]
        gx, weight = torch.randn(N, gates * H), torch.randn(gates * H, H)
        bias = torch.randn(gates * H)
        h0 = torch.randn(B, H)
        c0 = torch.randn(B, H) if has_cell else torch.empty(0)
        for reverse in (False, True):
            fwd = []
            n = count_launches(emulated, lambda: fwd.append(
                emulated.forward(code, gx, bs, weight, bias, h0, c0, reverse, True)))
            assert n == 2 * T + state_copies, (cell, batch_sizes, reverse, n)
            out, ws = fwd[0][0], fwd[0][3]
            gc_n = torch.randn(B, H) if has_cell else torch.empty(0)
            n = count_launches(emulated, lambda: emulated.backward(
                code, torch.randn(N, H), torch.randn(B, H), gc_n, bs, weight, h0, c0, out, ws,
                reverse))
            assert n == 2 * T + state_copies + 2, (cell, batch_sizes, reverse, n)
