"""The LayerNorm cells' CUDA path (csrc/cuda/layer_norm_per_step.cuh), compiled for the CPU
with tests/emulation/cuda_shim.h, against the CPU ops.

No GPU needed: the CUDA path's time loop (live rows per step, reverse walks, which rows
take their previous state from h0/c0, workspace rows with and without keep_workspace) and
its row kernels run on CPU tensors, every CUDA thread one after another; the GEMMs are
ATen's CPU ones (cuBLAS on a GPU, through the same ATen calls)."""
import pytest
import torch

import fastrnn  # noqa: F401  (registers the ops)
from helpers import build_emulator
from test_layer_norm import op_inputs

SOURCES = ["tests/emulation/layer_norm_emulator.cpp", "csrc/recurrence.cpp",
           "csrc/layer_norm_buffers.cpp"]
HEADERS = ["tests/emulation/cuda_shim.h", "tests/emulation/emulated_launch.h",
           "csrc/cuda/layer_norm_per_step.cuh", "csrc/cuda/per_step.cuh", "csrc/layer_norm.h",
           "csrc/recurrence.h", "csrc/cell_math.h", "csrc/cells.h", "csrc/raw_gemm.h"]
CODES = {"layer_norm_lstm": 0, "layer_norm_gru": 1}


@pytest.fixture(scope="module")
def emulated():
    build_emulator("fastrnn_layer_norm_emulator", SOURCES, HEADERS)
    return torch.ops.fastrnn_layer_norm_emulated


@pytest.mark.parametrize("cell", list(CODES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batch_sizes", [(4, 3, 3, 1), (2, 2), (1,)])
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_path_matches_cpu_ops(emulated, cell, dtype, batch_sizes, reverse):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    lstm = cell == "layer_norm_lstm"
    proj, bs, w, norms, states = op_inputs(cell, dtype, batch_sizes=batch_sizes, H=7)
    proj, w = proj.detach(), w.detach()
    norms = [n.detach() for n in norms]
    states = [s.detach() for s in states]
    c_norms = norms[2:] if lstm else [None, None]
    c0 = states[1] if lstm else None
    op = getattr(torch.ops.fastrnn, f"{cell}_forward")
    for keep in (False, True):  # the backward below takes the kept workspace
        want = op(proj, bs, w, *norms, *states, reverse, keep)
        got = emulated.forward(CODES[cell], proj, bs, w, *norms[:2], *c_norms, states[0], c0,
                               reverse, keep)
        for g, x in zip(got, [t for t in want if t is not None]):
            if lstm or g.numel():
                torch.testing.assert_close(g, x, **tol)
    output, workspace = want[0], want[-1]
    grads = [torch.randn_like(output), torch.randn_like(states[0])] + \
        ([torch.randn_like(c0)] if lstm else [])
    want = getattr(torch.ops.fastrnn, f"{cell}_backward")(
        *grads, bs, w, *norms, *states, output, workspace, reverse)
    got = emulated.backward(CODES[cell], grads[0], grads[1], grads[2] if lstm else None, bs, w,
                            *norms[:2], *c_norms, states[0], c0, output, workspace, reverse)
    got = [g for g in got if g.numel() or lstm]
    assert len(got) == len(want)
    for g, x in zip(got, want):
        torch.testing.assert_close(g, x, **tol)


def test_one_row_kernel_launch_per_step(emulated):
    proj, bs, w, norms, states = op_inputs("layer_norm_lstm", torch.float32)
    args = [t.detach() for t in (proj, bs, w, *norms, *states)]
    emulated.launches()
    out = emulated.forward(0, *args[:7], args[7], args[8], False, True)
    assert emulated.launches() == len(bs)
    grads = [torch.ones_like(out[0]), torch.zeros_like(args[7]), torch.zeros_like(args[8])]
    emulated.backward(0, *grads, *args[1:7], args[7], args[8], out[0], out[-1], False)
    assert emulated.launches() == len(bs)
