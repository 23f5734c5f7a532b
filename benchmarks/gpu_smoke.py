"""CUDA checks that need nothing but torch (for GPU machines without pytest).

    python benchmarks/gpu_smoke.py

With each CUDA path forced in turn (FASTRNN_CUDA_PATH=persistent, per_step): every
cell as a 2-layer bidirectional module on an unsorted packed batch against torch.nn
(cuDNN, float64: outputs, states and all gradients), fp64 gradcheck of every op in
both directions, float32 module parity with torch.nn on the CPU, and bfloat16/float16
modules (16-bit weights in shared memory) at a hidden size only 16-bit weights fit
against the per-step path. Prints one line
per check and exits non-zero if any failed. tests/test_cuda.py is the full suite.
"""
import os
import sys
import traceback

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

CELLS = {"lstm": ("LSTM", {}), "gru": ("GRU", {}), "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
         "rnn_relu": ("RNN", {"nonlinearity": "relu"})}


def module_vs_torch(cell, dtype, device_ref):
    name, extra = CELLS[cell]
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(5, 12, num_layers=2, bidirectional=True, **extra)
    ours = getattr(fastrnn, name)(5, 12, num_layers=2, bidirectional=True, **extra)
    ours.load_state_dict(ref.state_dict())
    ref = ref.to(device_ref, dtype)
    ours = ours.to("cuda", dtype)
    x = torch.randn(7, 6, 5, dtype=dtype)
    lengths = torch.tensor([3, 7, 1, 5, 7, 2])
    results = []
    for module, device in ((ref, device_ref), (ours, "cuda")):
        xd = x.to(device).requires_grad_()
        out, state = module(pack_padded_sequence(xd, lengths, enforce_sorted=False))
        states = list(state) if isinstance(state, tuple) else [state]
        loss = (out.data ** 2).sum() + sum((s * s).sum() for s in states)
        loss.backward()
        results.append([out.data, *states, xd.grad] + [p.grad for p in module.parameters()])
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got.cpu(), want.cpu(), **tol)


def gradcheck(cell, reverse):
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    gen = torch.Generator().manual_seed(0)
    bs = torch.tensor([4, 3, 3, 1, 1])
    hidden, tokens = 3, int(bs.sum())

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).cuda().requires_grad_()

    args = [rand(tokens, gates * hidden), bs, rand(gates * hidden, hidden), rand(gates * hidden),
            rand(4, hidden)] + ([rand(4, hidden)] if cell == "lstm" else [])
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, reverse), args)


def half_weights_vs_per_step(dtype):
    # LSTM hidden 150: fits the persistent kernels on an H100/H200 only with 16-bit weights.
    torch.manual_seed(0)
    module = fastrnn.LSTM(16, 150, bidirectional=True).to("cuda", dtype)
    x = torch.randn(9, 5, 16, device="cuda", dtype=dtype)
    lengths = torch.tensor([9, 3, 6, 1, 8])
    results = {}
    for path in ("persistent", "per_step"):
        os.environ["FASTRNN_CUDA_PATH"] = path
        module.zero_grad()
        xd = x.clone().requires_grad_()
        out, (h, c) = module(pack_padded_sequence(xd, lengths, enforce_sorted=False))
        (out.data.float().pow(2).sum() + h.float().sum() + c.float().sum()).backward()
        results[path] = [out.data, h, c, xd.grad] + [p.grad for p in module.parameters()]
    tol = dict(rtol=1.6e-2, atol=1e-2) if dtype == torch.bfloat16 else dict(rtol=2e-3, atol=2e-3)
    for got, want in zip(results["persistent"], results["per_step"]):
        torch.testing.assert_close(got, want, **tol)


def main():
    if not torch.cuda.is_available():
        sys.exit("gpu_smoke.py: no CUDA GPU")
    checks = []
    for path in ("persistent", "per_step"):
        for cell in CELLS:
            checks.append((f"{path} {cell} module vs torch.nn cuDNN float64",
                           path, lambda c=cell: module_vs_torch(c, torch.float64, "cuda")))
            checks.append((f"{path} {cell} module vs torch.nn CPU float32",
                           path, lambda c=cell: module_vs_torch(c, torch.float32, "cpu")))
            for reverse in (False, True):
                checks.append((f"{path} {cell} gradcheck reverse={reverse}",
                               path, lambda c=cell, r=reverse: gradcheck(c, r)))
    for dtype in (torch.bfloat16, torch.float16):
        checks.append((f"persistent vs per_step LSTM hidden 150 {dtype}", "persistent",
                       lambda d=dtype: half_weights_vs_per_step(d)))
    failed = 0
    for name, path, check in checks:
        os.environ["FASTRNN_CUDA_PATH"] = path
        try:
            with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
                check()
            print(f"ok     {name}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    print(f"gpu_smoke: {len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
