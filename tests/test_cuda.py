"""The CUDA kernels against torch.nn (cuDNN on and off), against the CPU kernels, and
gradcheck, with each CUDA path (persistent, per-step) forced in turn through
FASTRNN_CUDA_PATH. Skipped without a GPU."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn.ops import CELLS
from helpers import TORCH_CELLS
from test_ops import compare_with_torch, op_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
ALL_CELLS = list(CELLS)
CUDA_PATHS = ["persistent", "per_step"]


@pytest.fixture(params=CUDA_PATHS)
def cuda_path(request, monkeypatch):
    """Runs a test with each CUDA path forced."""
    monkeypatch.setenv("FASTRNN_CUDA_PATH", request.param)
    return request.param


def largest_persistent_hidden(cell, dtype):
    """The largest hidden size whose persistent kernels fit this GPU."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    # cudaDevAttrMaxSharedMemoryPerBlockOptin; the table covers a torch without the attribute.
    optin = getattr(props, "shared_memory_per_block_optin", None) or {
        (7, 0): 98304, (7, 5): 65536, (8, 0): 166912, (8, 6): 101376, (8, 7): 166912,
        (8, 9): 101376, (9, 0): 232448}[(props.major, props.minor)]
    hidden = 1
    while torch.ops.fastrnn.persistent_smem_bytes(cell, hidden + 1, dtype) <= optin:
        hidden += 1
    return hidden


def cudnn_flags(enabled):
    # No TF32 in cuDNN: the comparison is at float32 precision.
    return torch.backends.cudnn.flags(enabled=enabled, deterministic=True, allow_tf32=False)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("layout", ["padded", "sorted", "unsorted"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cudnn", [True, False])
def test_cuda_matches_torch_nn(cell, layout, dtype, cudnn, cuda_path):
    with cudnn_flags(cudnn):
        compare_with_torch(cell, dtype, layout, bias=True, hidden=17, batch=7, device="cuda")


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("hidden", [1, 32, 33, 64])
def test_cuda_matches_torch_nn_odd_sizes_no_bias(cell, hidden, cuda_path):
    with cudnn_flags(True):
        compare_with_torch(cell, torch.float32, "unsorted", bias=False, hidden=hidden, batch=9,
                           device="cuda")


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("batch,max_len", [(1, 5), (4, 1), (1, 1), (300, 7), (301, 7)])
def test_cuda_matches_torch_nn_batch_shapes(cell, batch, max_len, cuda_path):
    # batch 300/301 spread over several rows per block of the persistent kernels (301:
    # a last block with fewer rows than the others).
    with cudnn_flags(True):
        compare_with_torch(cell, torch.float64, "unsorted", bias=True, hidden=5, batch=batch,
                           max_len=max_len, with_hx=False, device="cuda")


def test_cuda_matches_torch_nn_long_float32(cuda_path):
    # The AG News tutorial shape: float32 error must not grow through time.
    with cudnn_flags(True):
        compare_with_torch("lstm", torch.float32, "unsorted", bias=True, hidden=32, batch=16,
                           max_len=80, input_size=64, device="cuda")


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch_sizes", [(4, 3, 3, 1, 1), (3, 3, 3)], ids=["packed", "padded"])
def test_cuda_gradcheck(cell, reverse, batch_sizes, cuda_path):
    args = op_args(cell, batch_sizes=batch_sizes, device="cuda")
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, reverse), args)


def run_op(cell, args, reverse, grads):
    """Forward and backward through the op; returns outputs then input gradients."""
    outs = getattr(fastrnn, cell)(*args, reverse)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    total = sum((o * g).sum() for o, g in zip(outs, grads))
    return list(outs) + list(torch.autograd.grad(total, inputs))


def op_case(cell, hidden, dtype, batch_sizes=(6, 5, 5, 3, 1), seed=0):
    args = op_args(cell, dtype=dtype, batch_sizes=batch_sizes, hidden=hidden, device="cuda",
                   seed=seed)
    # weight_hh / sqrt(H): activations stay O(1) at any hidden size.
    args[2] = (args[2].detach() / hidden ** 0.5).requires_grad_()
    gen = torch.Generator().manual_seed(seed + 1)
    shapes = [(sum(batch_sizes), hidden)] + [(batch_sizes[0], hidden)] * (2 if cell == "lstm" else 1)
    grads = [torch.randn(s, dtype=dtype, generator=gen).to("cuda") for s in shapes]
    return args, grads


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16],
                         ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_paths_agree_at_the_eligibility_boundary(cell, dtype, reverse, monkeypatch):
    # bfloat16/float16 weights stay 16-bit in shared memory: about 1.4x the hidden units.
    # The batch gives the persistent kernels their largest launch: the most rows per block
    # (the shared memory use_persistent sizes for), with a last block of one row.
    hidden = largest_persistent_hidden(cell, dtype)
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    batch = torch.ops.fastrnn.persistent_max_rows() * sms + 1
    args, grads = op_case(cell, hidden, dtype, batch_sizes=(batch, batch - 1, batch - 1, 3, 1))
    results = {}
    for path in CUDA_PATHS:
        monkeypatch.setenv("FASTRNN_CUDA_PATH", path)
        results[path] = run_op(cell, args, reverse, grads)
    tol = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10),
           # both compute in float32; a different summation order can flip the last bit
           torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
           torch.float16: dict(rtol=2e-3, atol=2e-3)}[dtype]
    for got, want in zip(results["persistent"], results["per_step"]):
        torch.testing.assert_close(got, want, **tol)

    # One unit more does not fit: forcing the persistent path is a clear error, auto works.
    args, grads = op_case(cell, hidden + 1, dtype)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "persistent")
    with pytest.raises(RuntimeError, match="FASTRNN_CUDA_PATH=persistent"):
        getattr(fastrnn, cell)(*args, reverse)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "auto")
    auto = run_op(cell, args, reverse, grads)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "per_step")
    for got, want in zip(auto, run_op(cell, args, reverse, grads)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_backward_of_either_path_takes_either_forward(cell, reverse, monkeypatch):
    # Both forwards write the same workspace layout.
    args, grads = op_case(cell, 12, torch.float64)
    args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward")
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward")
    results = {}
    for fwd_path in CUDA_PATHS:
        monkeypatch.setenv("FASTRNN_CUDA_PATH", fwd_path)
        fwd = forward(*args, reverse)
        for bwd_path in CUDA_PATHS:
            monkeypatch.setenv("FASTRNN_CUDA_PATH", bwd_path)
            proj, bs, w, b, h0 = args[:5]
            if cell == "lstm":
                bwd = backward(grads[0], grads[1], grads[2], bs, w, h0, args[5], fwd[0], fwd[3],
                               reverse)
            else:
                bwd = backward(grads[0], grads[1], bs, w, h0, fwd[0], fwd[2], reverse)
            results[fwd_path, bwd_path] = list(fwd[:-1]) + list(bwd)
    want = results["per_step", "per_step"]
    for key, got in results.items():
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10, msg=str(key))


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_reduced_precision(cell, dtype, cuda_path):
    args = op_args(cell, dtype=torch.float32, requires_grad=False, device="cuda")
    low = [a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
           for a in args]
    want = getattr(fastrnn, cell)(*[a.float() if isinstance(a, torch.Tensor) and
                                    a.is_floating_point() else a for a in low])
    got = getattr(fastrnn, cell)(*low)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), w, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_reduced_precision_module_backward(cell, dtype, cuda_path):
    torch.manual_seed(0)
    cls, extra = TORCH_CELLS[cell]
    ref = getattr(fastrnn, cls.__name__)(8, 16, **extra).cuda()
    low = getattr(fastrnn, cls.__name__)(8, 16, **extra).cuda()
    low.load_state_dict(ref.state_dict())
    low = low.to(dtype)
    x = torch.randn(6, 3, 8, device="cuda")
    lengths = torch.tensor([6, 2, 4])
    out32 = ref(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data
    out = low(pack_padded_sequence(x.to(dtype), lengths, enforce_sorted=False))[0].data
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), out32, rtol=2e-2, atol=2e-2)
    out32.sum().backward()
    out.float().sum().backward()
    for p32, p in zip(ref.parameters(), low.parameters()):
        assert p.grad.dtype == dtype
        if cell == "rnn_relu" and dtype == torch.bfloat16:
            # bfloat16 rounding of the input projection can flip relu at a pre-activation
            # near 0, which moves single gradient entries by O(1) (3 seeds in 20 on the CPU
            # kernels): compare in norm (0.1 at worst in 40 seeds; a wrong gradient is O(1)).
            err = ((p.grad.float() - p32.grad).norm() / p32.grad.norm()).item()
            assert err < 0.25, f"relative gradient error {err:.3g}"
        else:
            torch.testing.assert_close(p.grad.float(), p32.grad, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_cuda_module_matches_cpu(cell, cuda_path):
    torch.manual_seed(0)
    cls, extra = TORCH_CELLS[cell]
    cpu = getattr(fastrnn, cls.__name__)(8, 16, num_layers=2, bidirectional=True, **extra)
    gpu = getattr(fastrnn, cls.__name__)(8, 16, num_layers=2, bidirectional=True, **extra).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(9, 4, 8)
    lengths = torch.tensor([9, 3, 5, 1])
    outs = []
    for module, device in ((cpu, "cpu"), (gpu, "cuda")):
        xd = x.to(device).requires_grad_()
        out, state = module(pack_padded_sequence(xd, lengths, enforce_sorted=False))
        h_n = state[0] if cell == "lstm" else state
        (out.data.sum() + h_n.sum()).backward()
        outs.append([out.data, h_n, xd.grad] + [p.grad for p in module.parameters()])
    for want, got in zip(*outs):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_module_matches_torch_nn_multilayer(cell, cuda_path):
    torch.manual_seed(0)
    cls, extra = TORCH_CELLS[cell]
    ref = cls(8, 24, num_layers=3, bidirectional=True, batch_first=True, **extra).cuda().double()
    ours = fastrnn.convert(copy.deepcopy(ref))  # convert() works in place
    assert type(ref) is cls
    x = torch.randn(5, 11, 8, device="cuda", dtype=torch.float64)
    lengths = torch.tensor([11, 4, 7, 1, 9])
    with cudnn_flags(True):
        want = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    got = ours(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(got[0].data, want[0].data, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_cuda_double_backward_matches_cpu_torch_nn(cell):
    # cuDNN has no double backward; fastrnn's (a plain-ops recomputation) works on CUDA too.
    torch.manual_seed(0)
    cls, extra = TORCH_CELLS[cell]
    ref = cls(3, 5, num_layers=2, bidirectional=True, **extra).double()
    ours = fastrnn.convert(cls(3, 5, num_layers=2, bidirectional=True, **extra)).cuda().double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    results = []
    for module, device in ((ref, "cpu"), (ours, "cuda")):
        xd = x.to(device).requires_grad_()
        out, _ = module(pack_padded_sequence(xd, torch.tensor([6, 2, 5, 1]), enforce_sorted=False))
        leaves = [xd, *module.parameters()]
        first = torch.autograd.grad(out.data.pow(2).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(sum(g.pow(2).sum() for g in first), leaves)
        results.append([g.cpu() for g in first + second])
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_lstm_projections_match_cudnn(dtype, cuda_path):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(6, 24, proj_size=8, num_layers=2, bidirectional=True).cuda().to(dtype)
    ours = fastrnn.convert(torch.nn.LSTM(6, 24, proj_size=8, num_layers=2, bidirectional=True))
    ours = ours.cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(9, 5, 6, device="cuda", dtype=dtype)
    lengths = torch.tensor([9, 3, 6, 1, 8])
    results = []
    for module in (ref, ours):
        xd = x.clone().requires_grad_()
        with cudnn_flags(True):
            out, (h, c) = module(pack_padded_sequence(xd, lengths, enforce_sorted=False))
            (out.data.pow(2).sum() + h.sum() + c.sum()).backward()
        results.append([out.data, h, c, xd.grad] + [p.grad for p in module.parameters()])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("cudnn", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_autocast_result_dtype_matches_torch_nn(cell, cudnn, dtype, cuda_path):
    # cuDNN's autocast wrapper computes in float16 whatever autocast's dtype; without
    # cuDNN torch.nn's cell ops follow autocast's dtype. fastrnn returns the same dtype.
    torch.manual_seed(0)
    cls, extra = TORCH_CELLS[cell]
    ref = cls(8, 16, num_layers=2, **extra).cuda()
    ours = fastrnn.convert(copy.deepcopy(ref))
    x = torch.randn(6, 3, 8, device="cuda")
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4]), enforce_sorted=False)
    results = []
    for module in (ref, ours):
        with torch.backends.cudnn.flags(enabled=cudnn), torch.autocast("cuda", dtype=dtype):
            for inp in (x, packed):
                out, _ = module(inp)
                results.append(out.data if inp is packed else out)
    for got, want in zip(results[2:], results[:2]):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=3e-2)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_cuda_forward_without_workspace(cell, cuda_path):
    args = op_args(cell, dtype=torch.float32, batch_sizes=(6, 5, 5, 3, 1), hidden=7,
                   device="cuda", requires_grad=False)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    for reverse in (False, True):
        full, lean = forward(*args, reverse, True), forward(*args, reverse, False)
        for got, want in zip(lean[:-1], full[:-1]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert lean[-1].shape == (0, full[-1].shape[1])


def test_cuda_path_env_must_be_known(monkeypatch):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "fastest")
    with pytest.raises(RuntimeError, match="FASTRNN_CUDA_PATH must be auto, persistent or per_step"):
        fastrnn.rnn_tanh(*op_args("rnn_tanh", device="cuda", requires_grad=False))


@pytest.mark.skipif(not torch.cuda.is_available() or
                    torch.cuda.get_device_properties(0).total_memory < 60 * 2**30,
                    reason="needs a GPU with 60 GiB")
def test_cuda_int64_offsets(monkeypatch):
    # output has more than 2^31 elements: token offsets must be computed in int64.
    hidden, batch = 32, 2048
    steps = 2**31 // (hidden * batch) + 3
    gen = torch.Generator(device="cuda").manual_seed(0)
    proj = torch.randn(steps * batch, hidden, device="cuda", generator=gen)
    bs = torch.full((steps,), batch, dtype=torch.int64)
    bs[-1] = batch // 2
    proj = proj[: int(bs.sum())]
    w = torch.randn(hidden, hidden, device="cuda", generator=gen) * 0.1
    h0 = torch.randn(batch, hidden, device="cuda", generator=gen)
    tail = 2 * batch + batch // 2  # the tokens of the last three steps
    results = {}
    for path in CUDA_PATHS:
        monkeypatch.setenv("FASTRNN_CUDA_PATH", path)
        out, h_n = fastrnn.rnn_tanh(proj, bs, w, None, h0)
        results[path] = (out[-tail:].clone(), h_n)
        del out
    for got, want in zip(results["persistent"], results["per_step"]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # Step T-2 recomputed here from step T-3's output.
    last = results["persistent"][0]
    want = torch.tanh(proj[-tail + batch: -(batch // 2)] + last[:batch] @ w.t())
    torch.testing.assert_close(last[batch: 2 * batch], want, rtol=1e-4, atol=1e-4)


def capture_and_compare(run, inputs, other_work):
    """Captures run() in a CUDA graph, does other_work(), writes new values into the
    captured inputs, replays, and checks the replay against run() called eagerly."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up: cuBLAS handles and workspaces, allocator pools
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    other_work()
    gen = torch.Generator(device="cuda").manual_seed(1)
    for t in inputs:
        t.copy_(torch.randn(t.shape, generator=gen, device="cuda", dtype=t.dtype) * 0.5)
    graph.replay()
    want = run()
    torch.cuda.synchronize()
    for got, w in zip(captured, want):
        torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-5)


def op_pair(cell, batch_sizes, hidden, reverse):
    """run() of the op's forward and backward on fixed tensors, and the float inputs."""
    args = op_args(cell, dtype=torch.float32, batch_sizes=batch_sizes, hidden=hidden,
                   device="cuda", requires_grad=False)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    tokens, batch = sum(batch_sizes), batch_sizes[0]
    grads = [torch.randn(tokens, hidden, device="cuda")] + [
        torch.randn(batch, hidden, device="cuda") for _ in range(2 if cell == "lstm" else 1)]

    def run():
        fwd = forward(*args, reverse)
        states = [args[4]] + ([args[5]] if cell == "lstm" else [])
        bwd = backward(*grads, args[1], args[2], *states, fwd[0], fwd[-1], reverse)
        return list(fwd[:-1]) + list(bwd)

    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()] + grads
    return run, inputs


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_graph_capture_and_replay(cell, reverse, cuda_path):
    # The persistent kernels take batch_sizes (run-length encoded) by value in their
    # parameters, so a replay reads no host buffer of the captured call. Between capture
    # and replay, calls with other batch_sizes reuse pinned and device memory.
    run, inputs = op_pair(cell, (5, 3, 3, 1), 9, reverse)
    other, _ = op_pair(cell, (7, 7, 6, 2, 1, 1), 9, not reverse)
    capture_and_compare(run, inputs, lambda: [other() for _ in range(3)])


def test_cuda_graph_capture_with_more_step_runs_than_parameters_hold(monkeypatch):
    # 400 distinct batch sizes: more runs than kMaxStepRuns (384). Eagerly the persistent
    # kernels read them from a device copy; under capture auto takes the per-step path
    # and forcing the persistent one is a clear error.
    batch_sizes = tuple(range(400, 0, -1))
    run, inputs = op_pair("rnn_tanh", batch_sizes, 4, False)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "persistent")
    eager = run()
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "per_step")
    for got, want in zip(eager, run()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "auto")
    capture_and_compare(run, inputs, lambda: None)
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "persistent")
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="under CUDA graph capture"):
        with torch.cuda.graph(graph):
            run()
