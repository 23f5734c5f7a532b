"""The recurrence ops against torch.nn, gradcheck, opcheck, and bad input."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn.ops import CELLS
from helpers import TOL, op_bidirectional, pack, random_lengths, torch_module

ALL_CELLS = list(CELLS)
GEMM_PATHS = ["small", "dot", "blas"]


@pytest.fixture(params=GEMM_PATHS)
def gemm_path(request, monkeypatch):
    """Runs a test with each per-step GEMM path of the CPU kernels forced."""
    monkeypatch.setenv("FASTRNN_CPU_GEMM", request.param)
    return request.param


def compare_with_torch(cell, dtype, layout, bias, hidden, batch=5, max_len=6, input_size=4,
                       seed=0, with_hx=True, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = torch_module(cell, input_size, hidden, bias=bias, bidirectional=True, dtype=dtype)
    module = module.to(device)
    lengths = random_lengths(batch, max_len, gen, layout)

    def leaf(*shape, random=True):
        t = torch.randn(*shape, dtype=dtype, generator=gen) if random else torch.zeros(*shape)
        return t.to(device=device, dtype=dtype).requires_grad_()

    x = leaf(max_len, batch, input_size)
    h0 = leaf(2, batch, hidden, random=with_hx)
    c0 = leaf(2, batch, hidden, random=with_hx)
    hx = (h0, c0) if cell == "lstm" else h0

    ref_out, ref_state = module(pack(x, lengths, layout), hx)
    ref_h, ref_c = ref_state if cell == "lstm" else (ref_state, None)
    out, h_n, c_n = op_bidirectional(cell, module, pack(x, lengths, layout), h0,
                                     c0 if cell == "lstm" else None)

    tol = TOL[dtype]
    torch.testing.assert_close(out, ref_out.data, **tol)
    torch.testing.assert_close(h_n, ref_h, **tol)
    if cell == "lstm":
        torch.testing.assert_close(c_n, ref_c, **tol)

    # Every gradient, with a random weighting of every output.
    g_out = torch.randn(out.shape, dtype=dtype, generator=gen).to(device)
    g_h = torch.randn(h_n.shape, dtype=dtype, generator=gen).to(device)
    g_c = torch.randn(h_n.shape, dtype=dtype, generator=gen).to(device)
    inputs = [x, h0] + ([c0] if cell == "lstm" else []) + list(module.parameters())

    def loss(o, h, c):
        total = (o * g_out).sum() + (h * g_h).sum()
        return total + (c * g_c).sum() if c is not None else total

    ref_grads = torch.autograd.grad(loss(ref_out.data, ref_h, ref_c), inputs)
    grads = torch.autograd.grad(loss(out, h_n, c_n), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("layout", ["padded", "sorted", "unsorted"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_nn(cell, layout, dtype, gemm_path):
    compare_with_torch(cell, dtype, layout, bias=True, hidden=3)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("hidden", [1, 17, 33])
def test_matches_torch_nn_odd_sizes_no_bias(cell, hidden):
    compare_with_torch(cell, torch.float32, "unsorted", bias=False, hidden=hidden, batch=7)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("batch,max_len", [(1, 5), (4, 1), (1, 1)])
def test_matches_torch_nn_tiny(cell, batch, max_len):
    compare_with_torch(cell, torch.float64, "unsorted", bias=True, hidden=3, batch=batch,
                       max_len=max_len, with_hx=False)


def test_matches_torch_nn_larger_float32():
    # Long sequences and a wider layer: float32 error must not grow through time.
    compare_with_torch("lstm", torch.float32, "unsorted", bias=True, hidden=40, batch=9,
                       max_len=60, input_size=16)


def op_args(cell, dtype=torch.float64, batch_sizes=(4, 3, 3, 1), hidden=3, bias=True,
            requires_grad=True, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    gates = CELLS[cell][0]
    bs = torch.tensor(batch_sizes, dtype=torch.int64)
    tokens, batch = int(bs.sum()), int(bs[0])

    def rand(*shape):
        t = torch.randn(*shape, dtype=dtype, generator=gen).to(device)
        return t.requires_grad_(requires_grad)

    args = [rand(tokens, gates * hidden), bs, rand(gates * hidden, hidden),
            rand(gates * hidden) if bias else None, rand(batch, hidden)]
    if cell == "lstm":
        args.append(rand(batch, hidden))
    return args


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch_sizes", [(4, 3, 3, 1, 1), (3, 3, 3)], ids=["packed", "padded"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(cell, reverse, batch_sizes, bias):
    args = op_args(cell, batch_sizes=batch_sizes, bias=bias)
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, reverse), args)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gradcheck_blas_path(cell, monkeypatch):
    monkeypatch.setenv("FASTRNN_CPU_GEMM", "blas")
    args = op_args(cell)
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, True), args)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(cell, dtype):
    args = op_args(cell, dtype=dtype)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    torch.library.opcheck(forward, (*args, True))
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(forward, (*detached, True, False))  # keep_workspace=False

    outputs = forward(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args], False)
    output, h_n, workspace = outputs[0], outputs[1], outputs[-1]
    weight_hh, h0 = args[2].detach(), args[4].detach()
    grads = [torch.randn_like(output), torch.randn_like(h_n)]
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    if cell == "lstm":
        c0 = args[5].detach()
        backward_args = (*grads, torch.randn_like(h_n), args[1], weight_hh, h0, c0, output,
                         workspace, False)
    else:
        backward_args = (*grads, args[1], weight_hh, h0, output, workspace, False)
    torch.library.opcheck(backward, backward_args)


def keep_workspace_passed(cell, args, reverse):
    """The keep_workspace argument fastrnn.<cell> passes to its forward op."""
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "fastrnn":
                # The dispatcher drops trailing arguments equal to their default (True).
                seen.append(args[-1] if len(args) == (8 if cell == "lstm" else 7) else True)
            return func(*args, **(kwargs or {}))

    with Record():
        getattr(fastrnn, cell)(*args, reverse)
    return seen[0]


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_without_workspace(cell, reverse, gemm_path):
    # keep_workspace=False (what fastrnn's wrappers pass when no backward can follow):
    # the same results, bitwise, and an empty workspace.
    args = op_args(cell, dtype=torch.float32, batch_sizes=(6, 5, 5, 3, 1), hidden=7,
                   requires_grad=False)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    full, lean = forward(*args, reverse, True), forward(*args, reverse, False)
    for got, want in zip(lean[:-1], full[:-1]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert lean[-1].shape == (0, full[-1].shape[1])
    grad_args = op_args(cell, dtype=torch.float32)
    # The wrappers keep it exactly when a backward can follow.
    assert keep_workspace_passed(cell, args, reverse) is False
    assert keep_workspace_passed(cell, grad_args, reverse) is True
    with torch.no_grad():
        assert keep_workspace_passed(cell, grad_args, reverse) is False
    with pytest.raises(RuntimeError, match="keep_workspace=False cannot be differentiated"):
        forward(*grad_args, reverse, False)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_bfloat16_computes_in_float32(cell):
    args32 = op_args(cell, dtype=torch.float32, requires_grad=False)
    args16 = [a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.is_floating_point()
              else a for a in args32]
    exact = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
             for a in args16]
    fn = getattr(fastrnn, cell)
    got = fn(*args16)
    want = fn(*exact)
    for g, w in zip(got, want):
        # The float32 result, rounded once to bfloat16 at the end.
        assert g.dtype == torch.bfloat16
        assert torch.equal(g, w.to(torch.bfloat16))


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_bfloat16_backward(cell):
    args = op_args(cell, dtype=torch.bfloat16)
    outputs = getattr(fastrnn, cell)(*args)
    sum(o.float().sum() for o in outputs).backward()
    for a in args:
        if isinstance(a, torch.Tensor) and a.requires_grad:
            assert a.grad is not None and a.grad.dtype == torch.bfloat16
            assert torch.isfinite(a.grad.float()).all()


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_deterministic(cell, gemm_path):
    args = op_args(cell, dtype=torch.float32, batch_sizes=(40,) * 3 + (20,) * 5, hidden=64)
    fn = getattr(fastrnn, cell)

    def run():
        outputs = fn(*args)
        params = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        grads = torch.autograd.grad(sum(o.sum() for o in outputs), params)
        return [o.detach() for o in outputs] + list(grads)

    first, second = run(), run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_nan_and_inf_propagate_like_torch(cell):
    module = torch_module(cell, 3, 4)
    x = torch.randn(5, 2, 3)
    x[1, 0, 0] = float("nan")
    x[2, 1, 1] = float("inf")
    lengths = torch.tensor([5, 4])
    packed = pack_padded_sequence(x, lengths)
    ref_out, _ = module(packed)
    proj = packed.data @ module.weight_ih_l0.t() + module.bias_ih_l0
    h0 = torch.zeros(2, 4)
    args = [proj, packed.batch_sizes, module.weight_hh_l0, module.bias_hh_l0, h0]
    out = getattr(fastrnn, cell)(*args, *([h0] if cell == "lstm" else []))[0]
    assert torch.equal(out.isnan(), ref_out.data.isnan())
    finite = ref_out.data.isfinite()
    torch.testing.assert_close(out[finite], ref_out.data[finite], rtol=1e-5, atol=1e-5)


def test_activations_accuracy():
    # The float kernels use polynomial exp/tanh; check them against torch over a wide range.
    x = torch.linspace(-30, 30, 200001)
    zero_w = torch.zeros(1, 1)
    # One step of a batch of x.numel() rows with one unit and h0 = 0.
    h0 = torch.zeros(x.numel(), 1)
    batch_sizes = torch.tensor([x.numel()])
    # RNN-tanh, zero recurrent weight: output = tanh(input).
    proj = x.view(-1, 1)
    out, _ = fastrnn.rnn_tanh(proj, batch_sizes, zero_w, None, h0)
    torch.testing.assert_close(out.view(-1), torch.tanh(x), rtol=2e-6, atol=1e-7)
    # GRU with zero weight: r, z = sigmoid(x), n = tanh(x); h = (1 - z) * n.
    proj3 = x.view(-1, 1).repeat(1, 3)
    out, _ = fastrnn.gru(proj3, batch_sizes, torch.zeros(3, 1), None, h0)
    want = (1 - torch.sigmoid(x)) * torch.tanh(x)
    torch.testing.assert_close(out.view(-1), want, rtol=1e-5, atol=1e-7)


# --- bad input ---------------------------------------------------------------------------

def bad_cases():
    good = op_args("lstm", dtype=torch.float32, requires_grad=False)
    proj, bs, w, b, h0, c0 = good

    def with_(i, value):
        args = list(good)
        args[i] = value
        return args

    return [
        ("input_proj shape", with_(0, proj[:, :-1]), "input_proj must have shape"),
        ("input_proj rank", with_(0, proj.view(-1)), "input_proj must have shape"),
        ("input_proj dtype", with_(0, proj.double()), "input_proj must have dtype"),
        ("input_proj int", with_(0, proj.int()), "input_proj must have dtype"),
        ("weight_hh shape", with_(2, w[:, :-1]), "weight_hh of lstm must have shape"),
        ("weight_hh int", with_(2, w.int()), "weight_hh must be float32"),
        ("bias_hh shape", with_(3, b[:-1]), "bias_hh must have shape"),
        ("h0 shape", with_(4, h0[:, :-1]), "h0 must have shape"),
        ("h0 rank", with_(4, h0[0]), "h0 must have shape"),
        ("h0 dtype", with_(4, h0.double()), "h0 must have dtype"),
        ("c0 shape", with_(5, c0[:-1]), "c0 must have shape"),
        ("batch_sizes int32", with_(1, bs.int()), "batch_sizes must be a 1-D int64"),
        ("batch_sizes float", with_(1, bs.float()), "batch_sizes must be a 1-D int64"),
        ("batch_sizes 2-D", with_(1, bs.view(1, -1)), "batch_sizes must be a 1-D int64"),
        ("batch_sizes increasing", with_(1, torch.tensor([3, 4, 3, 1])), "batch_sizes"),
        ("batch_sizes zero", with_(1, torch.tensor([4, 4, 3, 0])), "out of range"),
        ("batch_sizes negative", with_(1, torch.tensor([4, 4, 4, -1])), "out of range"),
        ("batch_sizes sum", with_(1, torch.tensor([4, 3, 3])), "sum to 10 but input_proj has 11"),
        ("batch_sizes first", with_(1, torch.tensor([3, 3, 3, 2])), "must equal the batch size"),
        ("batch_sizes too big", with_(1, torch.tensor([5, 3, 3])), "out of range"),
    ]


@pytest.mark.parametrize("name,args,message", bad_cases(), ids=[c[0] for c in bad_cases()])
def test_bad_input_is_a_clear_error(name, args, message):
    with pytest.raises(RuntimeError, match=message):
        fastrnn.lstm(*args)


FORWARD_NAMES = ["input_proj", "batch_sizes", "weight_hh", "bias_hh", "h0", "c0"]
BACKWARD_NAMES = ["grad_output", "grad_h_n", "grad_c_n", "batch_sizes", "weight_hh", "h0", "c0",
                  "output", "workspace"]


@pytest.mark.parametrize("name", [n for n in FORWARD_NAMES if n != "bias_hh"])
def test_none_for_a_required_tensor_of_the_forward_op_is_named(name):
    args = op_args("lstm", dtype=torch.float32, requires_grad=False)
    args[FORWARD_NAMES.index(name)] = None
    with pytest.raises(RuntimeError, match=f"{name} must be a tensor, got None"):
        torch.ops.fastrnn.lstm_forward.default(*args, False)


@pytest.mark.parametrize("name", BACKWARD_NAMES)
def test_none_for_a_required_tensor_of_the_backward_op_is_named(name):
    proj, bs, w, b, h0, c0 = op_args("lstm", dtype=torch.float32, requires_grad=False)
    out, h_n, c_n, ws = torch.ops.fastrnn.lstm_forward.default(proj, bs, w, b, h0, c0, False)
    args = [torch.ones_like(out), torch.ones_like(h_n), torch.ones_like(c_n), bs, w, h0, c0, out,
            ws]
    args[BACKWARD_NAMES.index(name)] = None
    with pytest.raises(RuntimeError, match=f"{name} must be a tensor, got None"):
        torch.ops.fastrnn.lstm_backward.default(*args, False)


def test_backward_op_names_output_when_batch_sizes_do_not_match_it():
    proj, bs, w, b, h0, c0 = op_args("lstm", dtype=torch.float32, requires_grad=False)
    out, h_n, c_n, ws = torch.ops.fastrnn.lstm_forward.default(proj, bs, w, b, h0, c0, False)
    short = torch.tensor([4, 3, 3], dtype=torch.int64)
    with pytest.raises(RuntimeError, match="but output has 11 rows"):
        torch.ops.fastrnn.lstm_backward.default(torch.ones_like(out), h_n, c_n, short, w, h0, c0,
                                                out, ws, False)


def test_bad_input_meta_device_batch_sizes():
    proj, bs, w, b, h0, c0 = op_args("lstm", dtype=torch.float32, requires_grad=False)
    with pytest.raises(RuntimeError, match="batch_sizes must be a 1-D int64 tensor on the CPU"):
        fastrnn.lstm(proj, bs.to("meta"), w, b, h0, c0)


def test_empty_sequence_returns_initial_state():
    proj = torch.zeros(0, 4)
    h0 = torch.randn(2, 4)
    out, h_n = fastrnn.rnn_tanh(proj, torch.zeros(0, dtype=torch.int64), torch.randn(4, 4), None, h0)
    assert out.shape == (0, 4)
    assert torch.equal(h_n, h0)


def test_noncontiguous_inputs():
    args = op_args("gru", dtype=torch.float64, requires_grad=False)
    proj, bs, w, b, h0 = args
    want = fastrnn.gru(*args)
    got = fastrnn.gru(proj.t().contiguous().t(), bs, w.t().contiguous().t(), b, h0.t().contiguous().t())
    for g, x in zip(got, want):
        torch.testing.assert_close(g, x, rtol=0, atol=0)
