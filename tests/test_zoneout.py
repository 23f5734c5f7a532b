"""zoneout: h_t = z*h_{t-1} + (1-z)*h~_t (and c likewise for LSTM) on the fused recurrence,
z ~ Bernoulli(p) per token and unit in training, z = p at eval. Checked against the plain-ops
reference (fastrnn/reference.py) fed the very masks the module draws, against torch.nn's
cells at eval (the expectation), by gradcheck, and for reproducibility and bad input."""
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
from fastrnn import _compat, functional, reference
from fastrnn.cells import CELLS, ZONEOUT_SAVED
from helpers import TOL

ALL_CELLS = list(CELLS)
CLASSES = {"lstm": (fastrnn.LSTM, {}), "gru": (fastrnn.GRU, {}),
           "rnn_tanh": (fastrnn.RNN, {"nonlinearity": "tanh"}),
           "rnn_relu": (fastrnn.RNN, {"nonlinearity": "relu"})}


@pytest.fixture(params=["small", "dot", "blas"])
def gemm_path(request, monkeypatch):
    """Runs a test with each per-step GEMM path of the CPU kernels forced."""
    monkeypatch.setenv("FASTRNN_CPU_GEMM", request.param)
    return request.param


def op_args(cell, batch_sizes=(4, 3, 3, 1, 1), hidden=3, dtype=torch.float64, bias=True,
            seed=0, binary=True, requires_grad=True):
    """(args of fastrnn.<cell> up to h0/c0, zoneout mask) with random values."""
    gates, _, has_cell = CELLS[cell]
    gen = torch.Generator().manual_seed(seed)
    bs = torch.tensor(batch_sizes, dtype=torch.int64)
    tokens, batch = int(bs.sum()), int(bs[0])

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, generator=gen).requires_grad_(requires_grad)

    args = [rand(tokens, gates * hidden), bs, rand(gates * hidden, hidden),
            rand(gates * hidden) if bias else None, rand(batch, hidden)]
    if has_cell:
        args.append(rand(batch, hidden))
    width = (2 if has_cell else 1) * hidden
    u = torch.rand(tokens, width, generator=gen, dtype=dtype)
    mask = (u < 0.4).to(dtype) if binary else u  # keep weights: 0/1 draws, or any in [0, 1)
    return args, mask


def call_op(cell, args, reverse, mask):
    """fastrnn.<cell> -> (output, h_n, c_n or None)."""
    if CELLS[cell][2]:
        return fastrnn.lstm(*args, reverse, zoneout=mask)
    return (*getattr(fastrnn, cell)(*args, reverse, zoneout=mask), None)


def call_reference(cell, args, reverse, mask):
    c0 = args[5] if CELLS[cell][2] else None
    return reference.direction(cell, *args[:5], c0, reverse, mask)


def assert_all_close(got, want, dtype, what=""):
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g is None) == (w is None), (what, i)
        if g is not None:
            torch.testing.assert_close(g, w, **TOL[dtype], msg=lambda m: f"{what} [{i}]: {m}")


def outputs_and_grads(results, leaves, gen):
    results = [r for r in results if r is not None]
    weights = [torch.randn(r.shape, dtype=r.dtype, generator=gen) for r in results]
    loss = sum((r * w).sum() for r, w in zip(results, weights))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True,
                                retain_graph=True)  # a packing graph may be shared
    return [r.detach() for r in results] + list(grads)


# --- the op ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batch_sizes", [(4, 3, 3, 1, 1), (3, 3, 3)], ids=["packed", "padded"])
@pytest.mark.parametrize("binary", [True, False], ids=["bernoulli", "weights"])
def test_op_matches_reference(cell, dtype, batch_sizes, binary, gemm_path):
    for reverse in (False, True):
        for bias in (True, False):
            args, mask = op_args(cell, batch_sizes, hidden=5, dtype=dtype, bias=bias,
                                 binary=binary, seed=int(reverse) + 2 * int(bias))
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            got = outputs_and_grads(call_op(cell, args, reverse, mask), leaves,
                                    torch.Generator().manual_seed(1))
            want = outputs_and_grads(call_reference(cell, args, reverse, mask), leaves,
                                     torch.Generator().manual_seed(1))
            assert_all_close(got, want, dtype, f"{cell} reverse={reverse} bias={bias}")


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_op_workspace_and_mask_gradient(cell):
    args, mask = op_args(cell, hidden=3)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    workspace = forward(*detached, False, True, mask)[-1]
    assert workspace.shape == (mask.shape[0], ZONEOUT_SAVED[cell] * 3)
    # The mask gets no gradient (not differentiable), the others do.
    mask = mask.clone().requires_grad_()
    out = call_op(cell, args, False, mask)[0]
    grads = torch.autograd.grad(out.sum(), [args[0], mask], allow_unused=True)
    assert grads[0] is not None and grads[1] is None


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("binary", [True, False], ids=["bernoulli", "weights"])
def test_gradcheck(cell, reverse, binary):
    args, mask = op_args(cell, binary=binary)
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, reverse, zoneout=mask), args)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gradcheck_blas_path(cell, monkeypatch):
    monkeypatch.setenv("FASTRNN_CPU_GEMM", "blas")
    args, mask = op_args(cell, binary=False)
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, True, zoneout=mask), args)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_opcheck(cell):
    args, mask = op_args(cell, dtype=torch.float32)
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    torch.library.opcheck(forward, (*args, True, True, mask))
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    outputs = forward(*detached, False, True, mask)
    output, h_n, workspace = outputs[0], outputs[1], outputs[-1]
    grads = [torch.randn_like(output), torch.randn_like(h_n)]
    states = [detached[4]] + ([detached[5]] if CELLS[cell][2] else [])
    if CELLS[cell][2]:
        grads.append(torch.randn_like(h_n))
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    torch.library.opcheck(backward, (*grads, args[1], detached[2], *states, output, workspace,
                                     False, mask))


def test_op_all_zero_mask_is_the_plain_op_and_all_one_keeps_the_state():
    args, mask = op_args("lstm", requires_grad=False)
    plain = fastrnn.lstm(*args, False)
    zero = fastrnn.lstm(*args, False, zoneout=torch.zeros_like(mask))
    for a, b in zip(plain, zero):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    out, h_n, c_n = fastrnn.lstm(*args, False, zoneout=torch.ones_like(mask))
    torch.testing.assert_close(h_n, args[4], rtol=0, atol=0)
    torch.testing.assert_close(c_n, args[5], rtol=0, atol=0)


@pytest.mark.parametrize("what", ["shape", "width", "dtype", "device", "rank"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_op_bad_zoneout_is_a_clear_error(cell, what):
    args, mask = op_args(cell, requires_grad=False)
    bad = {"shape": mask[1:], "width": mask[:, :-1], "dtype": mask.float(),
           "device": mask.to("meta"), "rank": mask.reshape(-1)}[what]
    expected = {"shape": "zoneout must have shape", "width": "zoneout must have shape",
                "dtype": "zoneout must have dtype", "device": "zoneout must be on",
                "rank": "zoneout must have shape"}[what]
    with pytest.raises(RuntimeError, match=expected):
        call_op(cell, args, False, bad)
    # The backward op checks it too.
    forward = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    out = forward(*args, False, True, mask)
    grads = [torch.randn_like(out[0]), torch.randn_like(out[1])]
    states = [args[4]]
    if cell == "lstm":
        grads.append(torch.randn_like(out[1]))
        states.append(args[5])
    backward = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    if what != "device":
        with pytest.raises(RuntimeError, match=expected):
            backward(*grads, args[1], args[2], *states, out[0], out[-1], False, bad)
    # A workspace made without zoneout is not one made with it (LSTM: one more slot).
    if ZONEOUT_SAVED[cell] == CELLS[cell][1]:
        return
    plain_ws = forward(*args, False, True)[-1]
    with pytest.raises(RuntimeError, match="workspace must have shape"):
        backward(*grads, args[1], args[2], *states, out[0], plain_ws, False, mask)


# --- the modules ---------------------------------------------------------------------


def make_module(cell, p, dtype=torch.float64, seed=0, **kwargs):
    cls, extra = CLASSES[cell]
    torch.manual_seed(seed)
    return cls(4, 5, zoneout=p, **extra, **kwargs).to(dtype)


class MaskRecorder:
    """Wraps functional.zoneout_mask: records the masks a forward draws, or (replay) hands
    out recorded ones in the same order."""

    def __init__(self, monkeypatch):
        self.masks, self.replay, self.index = [], False, 0
        original = functional.zoneout_mask

        def mask(*args):
            if self.replay:
                self.index += 1
                return self.masks[self.index - 1]
            m = original(*args)
            self.masks.append(m)
            return m

        monkeypatch.setattr(functional, "zoneout_mask", mask)


def module_input(layout, dtype, gen):
    x = torch.randn(6, 3, 4, dtype=dtype, generator=gen).requires_grad_()
    lengths = torch.tensor([6, 2, 4] if layout == "unsorted" else [6, 4, 2])
    if layout == "padded":
        return x, x
    return pack_padded_sequence(x, lengths, enforce_sorted=(layout == "sorted")), x


def run_module(module, data, hx, leaves, gen):
    out, hidden = module(data, hx)
    results = [out.data if isinstance(out, PackedSequence) else out]
    results += list(hidden) if isinstance(hidden, tuple) else [hidden]
    return outputs_and_grads(results, leaves + list(module.parameters()), gen)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("layout", ["sorted", "unsorted", "padded"])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True)],
                         ids=["1-layer", "2-layer-bidirectional"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_module_matches_reference_with_the_same_masks(cell, layout, kwargs, dtype, monkeypatch):
    module = make_module(cell, 0.3, dtype, **kwargs)
    gen = torch.Generator().manual_seed(5)
    data, x = module_input(layout, dtype, gen)
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    h0 = torch.randn(layers, 3, 5, dtype=dtype, generator=gen).requires_grad_()
    c0 = torch.randn(layers, 3, 5, dtype=dtype, generator=gen).requires_grad_()
    hx, leaves = ((h0, c0), [x, h0, c0]) if cell == "lstm" else (h0, [x, h0])
    recorder = MaskRecorder(monkeypatch)
    got = run_module(module, data, hx, leaves, torch.Generator().manual_seed(1))
    assert len(recorder.masks) == layers
    # The same module in plain torch ops (the torch.func path), fed the recorded masks.
    recorder.replay = True
    monkeypatch.setattr(functional, "_plain_ops_needed", lambda: True)
    want = run_module(module, data, hx, leaves, torch.Generator().manual_seed(1))
    assert recorder.index == layers
    assert_all_close(got, want, dtype, f"{cell} {layout} {kwargs}")


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_module_matches_reference_on_both_cpu_gemm_paths(cell, gemm_path, monkeypatch):
    test_module_matches_reference_with_the_same_masks(
        cell, "unsorted", dict(num_layers=2, bidirectional=True), torch.float64, monkeypatch)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_eval_is_the_expectation(cell):
    # At eval z = p: h_t = p*h_{t-1} + (1-p)*cell(x_t, h_{t-1}) with torch.nn's own cells.
    p = 0.35
    module = make_module(cell, p).eval()
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}.get(cell, torch.nn.RNNCell)
    extra = {} if cell in ("lstm", "gru") else {"nonlinearity": cell[4:]}
    step = cls(4, 5, **extra).double()
    step.load_state_dict({k[:-3]: v for k, v in module.state_dict().items()})
    x = torch.randn(7, 2, 4, dtype=torch.float64)
    h, c = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    outputs = []
    with torch.no_grad():
        got = module(x, (h[None], c[None]) if cell == "lstm" else h[None])
        for t in range(7):
            if cell == "lstm":
                h_new, c_new = step(x[t], (h, c))
                c = p * c + (1 - p) * c_new
            else:
                h_new = step(x[t], h)
            h = p * h + (1 - p) * h_new
            outputs.append(h)
    torch.testing.assert_close(got[0], torch.stack(outputs), **TOL[torch.float64])
    if cell == "lstm":
        torch.testing.assert_close(got[1][0][0], h, **TOL[torch.float64])
        torch.testing.assert_close(got[1][1][0], c, **TOL[torch.float64])
    else:
        torch.testing.assert_close(got[1][0], h, **TOL[torch.float64])


def test_eval_draws_nothing_and_is_deterministic():
    module = make_module("lstm", 0.5).eval()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    torch.manual_seed(0)
    first = module(x)[0]
    state = torch.get_rng_state()
    assert torch.equal(module(x)[0], first)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_zero_is_todays_module_bitwise(cell):
    cls, extra = CLASSES[cell]
    torch.manual_seed(0)
    zero = cls(4, 5, zoneout=0.0, num_layers=2, **extra)
    torch.manual_seed(0)
    plain = cls(4, 5, num_layers=2, **extra)
    assert repr(zero) == repr(plain)
    assert zero.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(5, 3, 4, requires_grad=True)
    got, want = zero(x), plain(x)
    assert torch.equal(got[0], want[0])
    g1 = torch.autograd.grad(got[0].sum(), [x, *zero.parameters()])
    g2 = torch.autograd.grad(want[0].sum(), [x, *plain.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_zero_passes_no_zoneout_to_the_ops(monkeypatch):
    seen = []
    original = functional._direction

    def direction(*args):
        seen.append(args[8])  # zoneout: the keep weights, or None
        return original(*args)

    monkeypatch.setattr(functional, "_direction", direction)
    module = fastrnn.GRU(4, 5, num_layers=2)
    # Eager calls take the stack op, which has no zoneout argument; the Python path (compiled,
    # traced or transformed calls) must pass None.
    assert module._stack_op_applies()
    monkeypatch.setattr(module, "_stack_op_applies", lambda: False)
    module(torch.randn(3, 2, 4))
    assert seen == [None, None]


def test_converted_and_unpickled_modules_default_to_zero():
    module = fastrnn.convert(torch.nn.LSTM(4, 5))
    assert module.zoneout == 0.0 and "zoneout" not in module.__dict__  # the class default
    assert "zoneout" not in repr(module)
    module(torch.randn(3, 2, 4))


def test_repr_shows_zoneout():
    assert repr(fastrnn.GRU(4, 5, zoneout=0.25)) == "fastrnn.GRU(4, 5, zoneout=0.25)"


def test_training_masks_are_reproducible_and_fresh_per_forward():
    module = make_module("lstm", 0.5, torch.float32)
    x = torch.randn(5, 2, 4)
    torch.manual_seed(3)
    first, again = module(x)[0], module(x)[0]
    torch.manual_seed(3)
    assert torch.equal(module(x)[0], first)  # bitwise, from torch's generator
    assert not torch.equal(first, again)  # a new mask each forward


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_rate_is_p(p, monkeypatch):
    recorder = MaskRecorder(monkeypatch)
    module = make_module("lstm", p, torch.float32, num_layers=2, bidirectional=True)
    module(torch.randn(50, 8, 4))
    masks = recorder.masks
    assert len(masks) == 4 and all(m.shape == (400, 10) for m in masks)
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks)
    rate = torch.cat(masks).mean().item()
    assert abs(rate - p) < 0.03, rate  # 16000 draws: std 0.004
    # A fresh mask for every layer and direction.
    assert not torch.equal(masks[0], masks[1])
    # Direct: the mask maker at eval is p itself.
    weight = torch.empty(3, 2, dtype=torch.float64)
    assert torch.equal(functional.zoneout_mask(p, False, 4, 6, weight),
                       torch.full((4, 6), p, dtype=torch.float64))


@pytest.mark.parametrize("p", [-0.1, 1.0, 2, "0.5", True, None])
def test_bad_probabilities_are_refused(p):
    with pytest.raises(ValueError, match="zoneout"):
        fastrnn.LSTM(4, 5, zoneout=p)


def test_proj_size_with_zoneout_is_refused():
    with pytest.raises(ValueError, match="zoneout with proj_size"):
        fastrnn.LSTM(4, 5, proj_size=2, zoneout=0.1)
    fastrnn.LSTM(4, 5, proj_size=2, zoneout=0.0)
    with pytest.raises(ValueError, match="zoneout with proj_size"):
        functional.rnn_stack("LSTM", torch.randn(3, 4), torch.tensor([1, 1, 1]),
                             torch.zeros(1, 1, 2), torch.zeros(1, 1, 5),
                             list(fastrnn.LSTM(4, 5, proj_size=2)._flat_weights), True, 1, 0.0,
                             True, False, proj_size=2, zoneout=0.1)


def test_jit_script_is_refused():
    with pytest.raises(RuntimeError, match="zoneout"):
        torch.jit.script(fastrnn.LSTM(4, 5, zoneout=0.1))


def test_lstm_never_hands_zoneout_to_torch_nn(monkeypatch):
    # The torch.nn fallback for large CPU inference knows no zoneout (applied at eval too).
    monkeypatch.setattr(_compat, "TORCH_LSTM_INFERENCE_FROM_WEIGHT_BYTES", 0)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    x = torch.randn(4, 2, 4)
    plain, zoned = fastrnn.LSTM(4, 5).eval(), fastrnn.LSTM(4, 5, zoneout=0.2).eval()
    with torch.no_grad():
        hx = plain._zero_state(x, 2)
        assert plain._torch_is_faster(x, None, hx)
        assert not zoned._torch_is_faster(x, None, hx)
        zoned.train()
        assert not zoned._torch_is_faster(x, None, hx)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_double_backward_matches_reference(cell, monkeypatch):
    module = make_module(cell, 0.4, num_layers=2, bidirectional=True)
    gen = torch.Generator().manual_seed(2)
    data, x = module_input("unsorted", torch.float64, gen)
    recorder = MaskRecorder(monkeypatch)
    results = []
    for plain in (False, True):
        if plain:
            recorder.replay = True
            monkeypatch.setattr(functional, "_plain_ops_needed", lambda: True)
        out, _ = module(data)
        leaves = [x, *module.parameters()]
        first = torch.autograd.grad(out.data.sin().sum(), leaves, create_graph=True)
        penalty = sum((g ** 2).sum() for g in first)
        second = torch.autograd.grad(penalty, leaves, retain_graph=True)
        results.append([g.detach() for g in first] + list(second))
    assert_all_close(results[0], results[1], torch.float64, cell)


def test_torch_compile_fullgraph():
    # aot_eager: the registered ops' fake kernels and autograd (zoneout saved and passed on).
    module = make_module("gru", 0.3, num_layers=2, bidirectional=True).eval()
    x = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    got, want = compiled(x), module(x)
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float64])
    torch.testing.assert_close(got[1], want[1], **TOL[torch.float64])
    leaves = [x, *module.parameters()]
    for a, b in zip(torch.autograd.grad(got[0].sum(), leaves),
                    torch.autograd.grad(want[0].sum(), leaves)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    module.train()
    out = torch.compile(module, fullgraph=True, backend="aot_eager")(x)[0]  # draws in the graph
    assert out.shape == (5, 2, 10)
    torch.autograd.grad(out.sum(), leaves)


# --- CUDA (skipped without a GPU; the emulation tests run both paths' kernels on the CPU) ---


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("cuda_path", ["persistent", "per_step"])
@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cuda_op_matches_cpu(cell, dtype, cuda_path, monkeypatch):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", cuda_path)
    for reverse in (False, True):
        args, mask = op_args(cell, hidden=5, dtype=dtype, binary=not reverse)
        cuda_args = [a.detach().cuda().requires_grad_() if isinstance(a, torch.Tensor)
                     and a.requires_grad else a for a in args]
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        cuda_leaves = [a for a in cuda_args if isinstance(a, torch.Tensor) and a.requires_grad]
        want = outputs_and_grads(call_op(cell, args, reverse, mask), leaves,
                                 torch.Generator().manual_seed(1))
        results = [r if r is None else r.cpu()
                   for r in call_op(cell, cuda_args, reverse, mask.cuda())]
        # The loss weights are drawn on the CPU as for the reference; the gradients flow
        # back through .cpu() to the CUDA leaves.
        got = [g.cpu() if isinstance(g, torch.Tensor) else g for g in
               outputs_and_grads(results, cuda_leaves, torch.Generator().manual_seed(1))]
        assert_all_close(got, want, dtype, f"{cell} {cuda_path} reverse={reverse}")
