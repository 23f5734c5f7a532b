"""The persistent CUDA kernels (csrc/cuda/persistent_kernels.cuh), compiled for the CPU
with tests/emulation/cuda_shim.h and run thread by thread, against the CPU ops.

No GPU needed: this checks the kernels' logic, indexing (live rows, reverse walks,
token offsets, rows per block, strided loops when a block has fewer threads than
gates) and shared-memory layout (bfloat16/float16 weights included) with the very
source nvcc compiles, and, built with ThreadSanitizer, finds shared-memory races between
the threads of a block (a missing __syncthreads). It cannot see what only hardware shows
(the memory model, warp scheduling, launch limits); tests/test_cuda.py does that on a GPU.
"""
import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from fastrnn.cells import ZONEOUT_SAVED
from fastrnn.ops import CELLS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "tests/emulation/persistent_emulator.cpp", ROOT / "tests/emulation/cuda_shim.h",
           ROOT / "csrc/cuda/persistent_kernels.cuh", ROOT / "csrc/cell_math.h",
           ROOT / "csrc/cells.h"]
CELL_CODES = {cell: code for code, cell in enumerate(CELLS)}  # CellKind, csrc/cells.h


class Args(ctypes.Structure):
    _fields_ = ([("steps", ctypes.c_int64), ("batch", ctypes.c_int64)]
                + [(n, ctypes.c_int) for n in ("H", "rows", "threads", "reverse", "keep_saved",
                                                "external_runs")]
                + [(n, ctypes.c_void_p) for n in (
                    "sizes", "a", "w", "b", "h0", "c0", "out_in", "saved_in", "out",
                    "saved", "h_n", "c_n", "dgx", "dgh", "h_prev", "dh0", "dc0", "zoneout")])


@pytest.fixture(scope="module")
def emulator_lib(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:16]
    lib = tmp_path_factory.mktemp("emulator") / f"persistent_emulator_{digest}.so"
    includes = [f"-I{p}" for p in [ROOT / "csrc", *cpp_extension.include_paths()]]
    subprocess.run([compiler, "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread",
                    "-Wno-unknown-pragmas", *includes, str(SOURCES[0]), "-o", str(lib)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def emulator(emulator_lib):
    emulate = emulator_lib.emulate
    emulate.argtypes = [ctypes.c_int] * 4 + [ctypes.POINTER(Args)]
    return emulate


@pytest.fixture(scope="module")
def max_rows(emulator_lib):
    """kPersistentMaxRows: the most rows a block owns."""
    return emulator_lib.max_rows()


def ptr(t):
    return None if t is None else t.data_ptr()


def run_kernel(emulate, forward, cell, weight_code, sizes, H, rows, threads, reverse,
               tensors, dtype, keep_saved=True, external_runs=False):
    # external_runs: the step table in a separate buffer (persistent.cu's fallback beyond
    # kMaxStepRuns runs) instead of by value in the kernel parameters.
    args = Args(steps=len(sizes), batch=int(sizes[0]), H=H, rows=rows, threads=threads,
                reverse=int(reverse), keep_saved=int(keep_saved),
                external_runs=int(external_runs), sizes=ptr(sizes),
                **{k: ptr(v) for k, v in tensors.items()})
    ok = emulate(int(forward), CELL_CODES[cell], int(dtype == torch.float64), weight_code,
                 ctypes.byref(args))
    assert ok == 1, "the kernel wrote past its shared memory"


CASES = [(6, 5, 5, 3, 1), (3, 3, 3, 3), (1, 1), (7,), (5, 2, 2, 2, 1, 1, 1)]
WEIGHTS = {"float32": (torch.float32, 0), "float64": (torch.float64, 0),
           "float16-weights": (torch.float16, 1), "bfloat16-weights": (torch.bfloat16, 2)}


@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("cell", list(CELL_CODES))
def test_persistent_kernels_match_cpu_ops(emulator, max_rows, cell, weights):
    check_cases(emulator, max_rows, cell, weights)


@pytest.mark.parametrize("weights", ["float32", "float64", "bfloat16-weights"])
@pytest.mark.parametrize("cell", list(CELL_CODES))
def test_persistent_kernels_with_zoneout_match_cpu_ops(emulator, max_rows, cell, weights):
    check_cases(emulator, max_rows, cell, weights, zoneout=True)


def check_cases(emulator, max_rows, cell, weights, zoneout=False):
    weight_dtype, weight_code = WEIGHTS[weights]
    dtype = torch.float64 if weight_dtype == torch.float64 else torch.float32
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    gates, saved, has_cell = CELLS[cell]
    gen = torch.Generator().manual_seed(CELL_CODES[cell])
    # 32 threads a block: more than the gate units at H=5 (but for LSTM and GRU), fewer
    # at H=11 (the strided loops).
    for H, threads in ((5, 32), (11, 32)):
        for case_index, batch_sizes in enumerate(CASES):
            for reverse in (False, True):
                rows = 1 + (case_index + reverse + H) % max_rows
                external_runs = (case_index + H) % 2 == 1
                check_one(emulator, cell, weight_dtype, weight_code, dtype, gates, saved,
                          has_cell, H, threads, batch_sizes, reverse, rows, gen, tol,
                          external_runs, zoneout)


def check_one(emulate, cell, weight_dtype, weight_code, dtype, gates, saved, has_cell, H,
              threads, batch_sizes, reverse, rows, gen, tol, external_runs=False,
              zoneout=False):
    bs = torch.tensor(batch_sizes, dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), bs.cumsum(0)[:-1]])
    N, B, GH = int(bs.sum()), batch_sizes[0], gates * H

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul(scale).to(dtype)

    gx, bias, h0 = rand(N, GH), rand(GH, scale=0.3), rand(B, H)
    c0 = rand(B, H) if has_cell else None
    weight = rand(GH, H, scale=0.5).to(weight_dtype)
    mask = None
    if zoneout:  # keep weights: 0/1 draws on even tokens, any in [0, 1) on odd ones
        u = torch.rand(N, (2 if has_cell else 1) * H, generator=gen, dtype=torch.float64)
        mask = torch.where(torch.arange(N).unsqueeze(1) % 2 == 0, (u < 0.5).double(), u)
        mask = mask.to(dtype)
        saved = ZONEOUT_SAVED[cell]
    # The reference: the CPU op, with the weights as the kernel reads them.
    args = [gx, bs, weight.to(dtype), bias, h0] + ([c0] if has_cell else [])
    forward_op = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    want = forward_op(*args, reverse, True, mask)
    want_out, want_h, want_ws = want[0], want[1], want[-1]

    out, h_n = torch.empty(N, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    ws = torch.empty(N if saved else 0, saved * H, dtype=dtype)
    c_n = torch.empty(B, H, dtype=dtype) if has_cell else None
    run_kernel(emulate, True, cell, weight_code, bs, H, rows, threads, reverse,
               dict(a=gx, w=weight, b=bias, h0=h0, c0=c0, out=out, saved=ws, h_n=h_n, c_n=c_n,
                    zoneout=mask), dtype, external_runs=external_runs)
    where = (f"{cell} H={H} batch_sizes={batch_sizes} reverse={reverse} rows={rows} "
             f"external_runs={external_runs} zoneout={zoneout}")
    torch.testing.assert_close(out, want_out, **tol, msg=lambda m: f"output, {where}: {m}")
    torch.testing.assert_close(h_n, want_h, **tol, msg=lambda m: f"h_n, {where}: {m}")
    if has_cell:
        torch.testing.assert_close(c_n, want[2], **tol, msg=lambda m: f"c_n, {where}: {m}")
    if saved:
        torch.testing.assert_close(ws, want_ws, **tol, msg=lambda m: f"workspace, {where}: {m}")

    # Without keep_saved (no backward to follow) the saved values go to one scratch row
    # per batch row: the same results, nothing written past [batch, S*H].
    scratch = torch.full((B + 1, saved * H), float("nan"), dtype=dtype)
    out2, h_n2 = torch.empty_like(out), torch.empty_like(h_n)
    c_n2 = torch.empty_like(c_n) if has_cell else None
    run_kernel(emulate, True, cell, weight_code, bs, H, rows, threads, reverse,
               dict(a=gx, w=weight, b=bias, h0=h0, c0=c0, out=out2, saved=scratch, h_n=h_n2,
                    c_n=c_n2, zoneout=mask), dtype, keep_saved=False,
               external_runs=external_runs)
    for got, ref in ((out2, out), (h_n2, h_n), (c_n2, c_n)):
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=lambda m: f"{where}: {m}")
    assert scratch[B].isnan().all(), f"wrote past the scratch rows, {where}"
    # The scratch holds each row's values of its last step walked.
    if saved:
        lengths = (bs.unsqueeze(0) > torch.arange(B).unsqueeze(1)).sum(1)
        final_step = (lengths - 1) if not reverse else torch.zeros_like(lengths)
        rows_tokens = offsets[final_step] + torch.arange(B)
        torch.testing.assert_close(scratch[:B], want_ws[rows_tokens], **tol,
                                   msg=lambda m: f"scratch, {where}: {m}")

    # Backward from the CPU forward's results; weight gradients as BackwardBuffers::finish.
    gout, gh_n = rand(N, H), rand(B, H)
    gc_n = rand(B, H) if has_cell else None
    backward_op = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    grads_in = [gout, gh_n] + ([gc_n] if has_cell else [])
    states = [h0] + ([c0] if has_cell else [])
    expect = backward_op(*grads_in, bs, weight.to(dtype), *states, want_out, want_ws, reverse,
                         mask)
    dh0 = torch.empty(B, H, dtype=dtype)
    dc0 = torch.empty(B, H, dtype=dtype) if has_cell else None
    dgx = torch.empty(N, GH, dtype=dtype)
    dgh = torch.empty(N, GH, dtype=dtype) if cell == "gru" else dgx
    h_prev = torch.empty(N, H, dtype=dtype)
    run_kernel(emulate, False, cell, weight_code, bs, H, rows, threads, reverse,
               dict(a=gout, w=weight, h0=h0, c0=c0, out_in=want_out, saved_in=want_ws,
                    h_n=gh_n, c_n=gc_n, dgx=dgx, dgh=dgh, h_prev=h_prev, dh0=dh0, dc0=dc0,
                    zoneout=mask),
               dtype, external_runs=external_runs)
    got = [dgx, dgh.t() @ h_prev, dgh.sum(0), dh0] + ([dc0] if has_cell else [])
    names = ["grad_input_proj", "grad_weight_hh", "grad_bias_hh", "grad_h0", "grad_c0"]
    for name, g, w in zip(names, got, expect):
        torch.testing.assert_close(g, w, **tol, msg=lambda m, n=name: f"{n}, {where}: {m}")


def test_persistent_kernels_have_no_data_races(tmp_path):
    # tests/emulation/race_driver.cpp under ThreadSanitizer: a shared-memory access that
    # no __syncthreads (std::barrier here) orders against another CUDA thread's write is
    # reported. (Removing the barrier between the backward's pointwise pass and its
    # matrix-vector product is reported, for one.)
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    binary = tmp_path / "race_driver"
    includes = [f"-I{p}" for p in [ROOT / "csrc", ROOT / "tests/emulation",
                                   *cpp_extension.include_paths()]]
    build = subprocess.run([compiler, "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread",
                            "-Wno-unknown-pragmas", *includes,
                            str(ROOT / "tests/emulation/race_driver.cpp"), "-o", str(binary)],
                           capture_output=True, text=True)
    if build.returncode != 0 and "tsan" in build.stderr.lower():
        pytest.skip(f"no ThreadSanitizer runtime: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600,
                         env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "ThreadSanitizer" not in run.stderr
    assert run.stdout.startswith("launches 64 failures 0"), run.stdout


@pytest.mark.parametrize("batch", [384, 385], ids=["runs-by-value", "runs-external"])
def test_persistent_kernels_step_table_capacity(emulator, max_rows, batch):
    # batch_sizes of `batch` distinct lengths is `batch` runs: 384 (kMaxStepRuns) travel in
    # the kernel parameters, 385 fall back to the external table; both walk alike.
    gen = torch.Generator().manual_seed(batch)
    for cell in ("lstm", "rnn_tanh"):
        gates, saved, has_cell = CELLS[cell]
        check_one(emulator, cell, torch.float64, 0, torch.float64, gates, saved, has_cell, 3, 32,
                  tuple(range(batch, 0, -1)), cell == "lstm", max_rows, gen,
                  dict(rtol=1e-12, atol=1e-12))
