"""fastrnn.LayerNormLSTM / LayerNormGRU and their fused ops, against plain torch ops: the
ops' reference (fastrnn.reference.layer_norm_direction), the modules run in plain ops
(fastrnn.reference.plain_ops) and an independent step-by-step loop over the padded batch."""
import copy
import pickle
import random

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import layer_norm_ops, reference
from helpers import TOL

CELLS = {"layer_norm_lstm": fastrnn.LayerNormLSTM, "layer_norm_gru": fastrnn.LayerNormGRU}
GATES = {"layer_norm_lstm": 4, "layer_norm_gru": 3}


def assert_close(ours, exact, dtype):
    """float64: within 1e-10. float32: within 1e-5 of the exact (float64) result of the same
    values, relative to the tensor's largest magnitude: the norms' 1/std amplifies rounding,
    and a float32 run of the plain-ops reference lands as far from the exact result
    (~1e-6 of the scale at 2x2 layers, measured) as the fused kernels do."""
    tol = TOL[dtype]
    if dtype == torch.float32:
        tol = dict(rtol=tol["rtol"], atol=tol["atol"] * max(1.0, exact.abs().max().item()))
    torch.testing.assert_close(ours.double(), exact, **tol)


@pytest.fixture(params=["small", "dot", "blas"])
def gemm(request, monkeypatch):
    monkeypatch.setenv("FASTRNN_CPU_GEMM", request.param)
    return request.param


def op_inputs(cell, dtype, bias=True, batch_sizes=(4, 3, 3, 1), H=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = GATES[cell]
    bs = torch.tensor(batch_sizes)
    N, B = int(bs.sum()), batch_sizes[0]

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    norms = [rand(G * H, scale=0.5) + 1, rand(G * H) if bias else None]
    if cell == "layer_norm_lstm":
        norms += [rand(H, scale=0.5) + 1, rand(H) if bias else None]
    norms = [n.detach().requires_grad_() if n is not None else None for n in norms]
    states = [rand(B, H)] + ([rand(B, H)] if cell == "layer_norm_lstm" else [])
    return rand(N, G * H), bs, rand(G * H, H, scale=0.5), norms, states


def run_op(cell, proj, bs, w, norms, states, reverse):
    if cell == "layer_norm_lstm":
        return layer_norm_ops.layer_norm_lstm(proj, bs, w, *norms, *states, reverse)
    return layer_norm_ops.layer_norm_gru(proj, bs, w, *norms, *states, reverse)


def run_reference(cell, proj, bs, w, norms, states, reverse):
    if cell == "layer_norm_lstm":
        out = reference.layer_norm_direction(cell, proj, bs, w, *norms, *states, reverse)
    else:
        out = reference.layer_norm_direction(cell, proj, bs, w, *norms, None, None, *states,
                                             None, reverse)
    return tuple(o for o in out if o is not None)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_op_matches_reference(cell, dtype, reverse, bias, gemm):
    proj, bs, w, norms, states = op_inputs(cell, dtype, bias)
    inputs = [t for t in [proj, w, *norms, *states] if t is not None]
    ours = run_op(cell, proj, bs, w, norms, states, reverse)
    # float32 is held to the exact (float64) result of the same values (assert_close).
    exact = {id(t): t.detach().double().requires_grad_() for t in inputs}
    wide = lambda t: None if t is None else exact[id(t)]  # noqa: E731
    ref = run_reference(cell, wide(proj), bs, wide(w), [wide(n) for n in norms],
                        [wide(s) for s in states], reverse)
    for a, b in zip(ours, ref):
        assert_close(a, b, dtype)
    grads = [torch.randn_like(o) for o in ours]
    for a, b in zip(torch.autograd.grad(ours, inputs, grads),
                    torch.autograd.grad(ref, [exact[id(t)] for t in inputs],
                                        [g.double() for g in grads])):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_op_gradcheck(cell, reverse):
    proj, bs, w, norms, states = op_inputs(cell, torch.float64, H=3, batch_sizes=(3, 2, 1))
    inputs = [proj, w, *norms, *states]
    k = len(norms)

    def fn(proj, w, *rest):
        return run_op(cell, proj, bs, w, list(rest[:k]), list(rest[k:]), reverse)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("cell", list(CELLS))
def test_opcheck(cell):
    """Schema, fake kernels and autograd registration (torch.library.opcheck)."""
    proj, bs, w, norms, states = op_inputs(cell, torch.float32)
    op = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    if cell == "layer_norm_lstm":
        args = (proj, bs, w, *norms, *states, False, True)
    else:
        args = (proj, bs, w, *norms, *states, False, True)
    torch.library.opcheck(op, args)


def padded_loop(module, x, lengths):
    """An independent reference: torch.nn-style step loop over the padded batch (one layer,
    one direction, batch-major x [B, T, F]), rows past their length keeping their state."""
    lstm = isinstance(module, fastrnn.LayerNormLSTM)
    H = module.hidden_size
    p = {n: getattr(module, f"{n}_l0", None) for n in
         ("weight_ih", "weight_hh", "ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias",
          "ln_c_weight", "ln_c_bias")}
    B, T, _ = x.shape
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    outs = []
    for t in range(T):
        gx = F.layer_norm(x[:, t] @ p["weight_ih"].t(), (p["weight_ih"].shape[0],),
                          p["ln_ih_weight"], p["ln_ih_bias"])
        gh = F.layer_norm(h @ p["weight_hh"].t(), (p["weight_hh"].shape[0],),
                          p["ln_hh_weight"], p["ln_hh_bias"])
        if lstm:
            i, f, g, o = (gx + gh).chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(
                F.layer_norm(c_new, (H,), p["ln_c_weight"], p["ln_c_bias"]))
        else:
            (xr, xz, xn), (hr, hz, hn) = gx.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new, c_new = (1 - z) * n + z * h, c
        live = (t < lengths).unsqueeze(1)
        h = torch.where(live, h_new, h)
        c = torch.where(live, c_new, c)
        outs.append(torch.where(live, h_new, torch.zeros_like(h_new)))
    return torch.stack(outs, 1), h


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_padded_step_loop(cell, bias):
    torch.manual_seed(0)
    m = CELLS[cell](4, 5, bias=bias, batch_first=True).double()
    with torch.no_grad():  # non-trivial norms
        for name, param in m.named_parameters():
            if name.startswith("ln_"):
                param.add_(torch.randn_like(param) * 0.3)
    x = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    out, state = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True)
    h_n = state[0] if cell == "layer_norm_lstm" else state
    ref_out, ref_h = padded_loop(m, x, lengths)
    torch.testing.assert_close(out, ref_out, **TOL[torch.float64])
    torch.testing.assert_close(h_n[0], ref_h, **TOL[torch.float64])
    params = [x, *m.parameters()]
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum() + h_n.sum(), params),
                    torch.autograd.grad((ref_out * g).sum() + ref_h.sum(), params)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


LAYOUTS = ["sorted", "unsorted", "padded", "batch_first"]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True)])
def test_module_matches_plain_ops(cell, layout, dtype, kwargs):
    torch.manual_seed(0)
    m = CELLS[cell](4, 5, batch_first=(layout == "batch_first"), **kwargs).to(dtype)
    x = torch.randn(3, 6, 4, dtype=dtype) if layout == "batch_first" else \
        torch.randn(6, 3, 4, dtype=dtype)
    x.requires_grad_()
    if layout in ("sorted", "unsorted"):
        lengths = torch.tensor([6, 4, 2]) if layout == "sorted" else torch.tensor([4, 6, 2])
        data = pack_padded_sequence(x, lengths, enforce_sorted=(layout == "sorted"))
    else:
        data = x
    D = 2 if kwargs else 1
    n = D * kwargs.get("num_layers", 1)
    h0 = torch.randn(n, 3, 5, dtype=dtype, requires_grad=True)
    hx = (h0, torch.randn(n, 3, 5, dtype=dtype, requires_grad=True)) \
        if cell == "layer_norm_lstm" else h0

    def run(module, data, hx):
        out, state = module(data, hx)
        out = out.data if layout in ("sorted", "unsorted") else out
        return [out, *(state if isinstance(state, tuple) else (state,))]

    ours = run(m, data, hx)
    # The reference in float64 on the same values (see test_op_matches_reference).
    m64 = copy.deepcopy(m).double()
    x64 = x.detach().double().requires_grad_()
    data64 = x64 if layout not in ("sorted", "unsorted") else \
        pack_padded_sequence(x64, lengths, enforce_sorted=(layout == "sorted"))
    hx64 = tuple(s.detach().double().requires_grad_() for s in hx) \
        if isinstance(hx, tuple) else hx.detach().double().requires_grad_()
    with reference.plain_ops():
        ref = run(m64, data64, hx64)
    states = list(hx) if isinstance(hx, tuple) else [hx]
    states64 = list(hx64) if isinstance(hx64, tuple) else [hx64]
    grads = [torch.randn_like(o) for o in ours]
    ours += torch.autograd.grad(ours, [x, *states, *m.parameters()], grads, retain_graph=True)
    ref += torch.autograd.grad(ref, [x64, *states64, *m64.parameters()],
                               [g.double() for g in grads])
    if dtype == torch.float64:
        for a, b in zip(ours, ref):
            assert_close(a, b, dtype)
        return
    # float32: 1e-5 of the scale for one layer; across 2x2 layers 3e-5, since the norms'
    # 1/std amplifies rounding layer after layer (measured over 24 seeds and both cells:
    # fused <= 2.0e-5, the plain-ops reference run in float32 itself <= 1.3e-5).
    scale = 1e-5 if not kwargs else 3e-5
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.double(), b, rtol=0,
                                   atol=scale * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("cell", list(CELLS))
def test_packed_equals_padded_at_full_length(cell):
    torch.manual_seed(0)
    m = CELLS[cell](4, 5).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    packed_out, _ = m(pack_padded_sequence(x, torch.tensor([6, 6, 6])))
    padded_out, _ = m(x)
    torch.testing.assert_close(pad_packed_sequence(packed_out)[0], padded_out, rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_parameters_state_dict_and_init(cell):
    m = CELLS[cell](4, 5, num_layers=2, bidirectional=True)
    G = GATES[cell]
    norms = ["ih", "hh"] + (["c"] if cell == "layer_norm_lstm" else [])
    for layer in range(2):
        for sfx in ("", "_reverse"):
            s = f"_l{layer}{sfx}"
            assert m.state_dict()[f"weight_hh{s}"].shape == (G * 5, 5)
            for norm in norms:
                size = 5 if norm == "c" else G * 5
                assert torch.equal(m.state_dict()[f"ln_{norm}_weight{s}"], torch.ones(size))
                assert torch.equal(m.state_dict()[f"ln_{norm}_bias{s}"], torch.zeros(size))
    assert not any(k.startswith("bias_") for k in m.state_dict())
    assert len(m.state_dict()) == 4 * (2 + 2 * len(norms))
    no_bias = CELLS[cell](4, 5, bias=False)
    assert not any("bias" in k for k in no_bias.state_dict())
    clone = CELLS[cell](4, 5, num_layers=2, bidirectional=True)
    clone.load_state_dict(m.state_dict())
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(clone(x)[0], m(x)[0], rtol=0, atol=0)
    again = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(again(x)[0], m(x)[0], rtol=0, atol=0)
    assert repr(m).startswith(f"fastrnn.{CELLS[cell].__name__}(4, 5, num_layers=2")
    assert not isinstance(m, (torch.nn.LSTM, torch.nn.GRU))


@pytest.mark.parametrize("cell", list(CELLS))
def test_unbatched_and_dropout_and_weight_drop(cell):
    torch.manual_seed(0)
    m = CELLS[cell](4, 5, num_layers=2, dropout=0.5, weight_drop=0.3)
    x = torch.randn(6, 4)
    out, state = m(x)
    assert out.shape == (6, 5)
    torch.manual_seed(1)
    a = m(x)[0]
    torch.manual_seed(1)
    b = m(x)[0]
    assert torch.equal(a, b)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_bad_inputs_give_clear_errors(cell):
    proj, bs, w, norms, states = op_inputs(cell, torch.float32)
    bad = list(norms)
    bad[0] = bad[0][:-1].detach()
    with pytest.raises(RuntimeError, match=r"ln_hh_weight must have shape \[\d+\]"):
        run_op(cell, proj, bs, w, bad, states, False)
    if cell == "layer_norm_lstm":
        bad = list(norms)
        bad[2] = bad[2].detach().double()
        with pytest.raises(RuntimeError, match="ln_c_weight must have dtype"):
            run_op(cell, proj, bs, w, bad, states, False)
    with pytest.raises(RuntimeError, match="input_proj must have shape"):
        run_op(cell, proj[:, :-1], bs, w, norms, states, False)
    m = CELLS[cell](4, 5)
    with pytest.raises(RuntimeError, match="Expected hidden"):
        m(torch.randn(6, 3, 4), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
          if cell == "layer_norm_lstm" else torch.zeros(1, 2, 5))
    with pytest.raises(TypeError):
        CELLS[cell](4, 5, proj_size=2)
    with pytest.raises(RuntimeError, match="jit.script"):
        torch.jit.script(m)


@pytest.mark.parametrize("cell", list(CELLS))
def test_double_backward_is_a_clear_error(cell):
    m = CELLS[cell](4, 5).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


@pytest.mark.parametrize("cell", list(CELLS))
def test_forward_bits_do_not_depend_on_threads_and_runs_repeat(cell):
    """As the plain cells (tests/test_determinism_threads.py): the same forward bits for 1
    and 2 threads; forward and backward bitwise repeatable at a given thread count (the
    parameter gradients' sums over tokens are ATen reductions, ordered by thread count)."""
    torch.manual_seed(0)
    m = CELLS[cell](8, 16)
    x = torch.randn(20, 64, 8)
    lengths = torch.randint(1, 21, (64,))
    lengths[0] = 20
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    threads = torch.get_num_threads()

    def run():
        out = m(packed)[0].data
        return [out, *torch.autograd.grad(out.square().sum(), list(m.parameters()))]

    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two, again = run(), run()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0])
    for a, b in zip(two, again):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_compile_fullgraph_packed(cell):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = CELLS[cell](5, 4, num_layers=2, bidirectional=True)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend="aot_eager")
    x = torch.randn(6, 3, 5)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 1]), enforce_sorted=False)
    results = []
    for module in (eager, compiled):
        out, state = module(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        loss = out.data.sum() + h_n.square().sum()
        results.append([out.data, *torch.autograd.grad(loss, list(module.parameters()))])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@st.composite
def fuzz_cases(draw):
    kind = draw(st.sampled_from(["packed", "padded", "unbatched"]))
    batch = 1 if kind == "unbatched" else draw(st.integers(1, 5))
    lengths = draw(st.lists(st.integers(1, 7), min_size=batch, max_size=batch))
    return dict(cell=draw(st.sampled_from(list(CELLS))), layers=draw(st.integers(1, 3)),
                bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
                batch_first=draw(st.booleans()), input_size=draw(st.integers(1, 6)),
                hidden=draw(st.integers(1, 9)), kind=kind, lengths=lengths,
                with_hx=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@given(fuzz_cases())
def test_fuzz_module_matches_plain_ops(case):
    """Random configurations, float64: outputs, states and the gradients of the input, the
    initial state and every parameter equal those of the module run in plain ops."""
    torch.manual_seed(case["seed"])
    m = CELLS[case["cell"]](case["input_size"], case["hidden"], num_layers=case["layers"],
                            bias=case["bias"], batch_first=case["batch_first"],
                            bidirectional=case["bidirectional"], dtype=torch.float64)
    with torch.no_grad():
        for name, param in m.named_parameters():
            if name.startswith("ln_"):
                param.add_(torch.randn_like(param) * 0.3)
    lengths, kind = case["lengths"], case["kind"]
    steps, batch = max(lengths), len(lengths)
    shape = (steps, case["input_size"]) if kind == "unbatched" else (
        (batch, steps, case["input_size"]) if case["batch_first"]
        else (steps, batch, case["input_size"]))
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    data = pack_padded_sequence(x, torch.tensor(lengths), batch_first=case["batch_first"],
                                enforce_sorted=False) if kind == "packed" else x
    states = []
    if case["with_hx"]:
        n = case["layers"] * (2 if case["bidirectional"] else 1)
        state_shape = (n, case["hidden"]) if kind == "unbatched" else (n, batch, case["hidden"])
        states = [torch.randn(*state_shape, dtype=torch.float64, requires_grad=True)
                  for _ in range(2 if case["cell"] == "layer_norm_lstm" else 1)]
    hx = None if not states else (tuple(states) if len(states) == 2 else states[0])

    def run():
        out, state = m(data, hx)
        out = out.data if kind == "packed" else out
        return [out, *(state if isinstance(state, tuple) else (state,))]

    ours = run()
    with reference.plain_ops():
        ref = run()
    leaves = [x, *states, *m.parameters()]
    grads = [torch.randn_like(o) for o in ours]
    ours += torch.autograd.grad(ours, leaves, grads, retain_graph=True, allow_unused=True)
    ref += torch.autograd.grad(ref, leaves, grads, allow_unused=True)
    for a, b in zip(ours, ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TOL[torch.float64])


# --- bad input (as tests/test_fuzz_bad_input.py for the plain ops) ----------------------

LN_MUTATIONS = ["shape", "dtype", "meta", "strides", "nonfinite", "none"]
LN_TENSORS = ["proj", "w", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias", "h0", "c0"]


def ln_call(cell, a):
    if cell == "layer_norm_lstm":
        return torch.ops.fastrnn.layer_norm_lstm_forward(
            a["proj"], a["bs"], a["w"], a["ln_hh_weight"], a["ln_hh_bias"], a["ln_c_weight"],
            a["ln_c_bias"], a["h0"], a["c0"], False)
    return torch.ops.fastrnn.layer_norm_gru_forward(
        a["proj"], a["bs"], a["w"], a["ln_hh_weight"], a["ln_hh_bias"], a["h0"], False)


LN_CASES = [(cell, key, mutation) for cell in CELLS for key in LN_TENSORS
            if cell == "layer_norm_lstm" or key not in ("ln_c_weight", "ln_c_bias", "c0")
            for mutation in LN_MUTATIONS]
LN_CASES += [(cell, "bs", mutation) for cell in CELLS
             for mutation in ("batch_sizes",) * 4 + ("strides", "none")]


@pytest.mark.parametrize("case", range(len(LN_CASES)))
def test_bad_inputs_raise_or_match(case):
    """Each malformed argument either raises an error with a message (never an internal
    assert, a crash or a silent wrong answer; the sanitizer job runs this too) or, where it
    is legal (strides, NaN/Inf), gives the reference's result."""
    from test_fuzz_bad_input import (ERRORS, assert_same, bad_batch_sizes, noncontiguous,
                                     other_dtype, wrong_shape)
    cell, key, mutation = LN_CASES[case]
    lstm = cell == "layer_norm_lstm"
    rnd = random.Random(case)
    proj, bs, w, norms, states = op_inputs(cell, torch.float64, H=3, batch_sizes=(3, 2, 2, 1))
    a = dict(proj=proj.detach(), bs=bs, w=w.detach(), h0=states[0].detach(),
             c0=states[1].detach() if lstm else None,
             **dict(zip(["ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias"],
                        [n.detach() for n in norms] + [None, None])))
    expect = "raise"
    if mutation == "shape":
        a[key] = wrong_shape(a[key], rnd)
    elif mutation == "dtype":
        a[key] = other_dtype(a[key], rnd)
    elif mutation == "meta":
        a[key] = a[key].to("meta")
    elif mutation == "strides":
        a[key] = noncontiguous(a[key], rnd)[0] if key != "bs" else \
            torch.stack([bs, bs], 1)[:, 0]
        expect = "match"
    elif mutation == "nonfinite":
        a[key] = a[key].clone()
        a[key].view(-1)[rnd.randrange(a[key].numel())] = rnd.choice([float("nan"), float("inf")])
        expect = "match"
    elif mutation == "none":
        if key in ("ln_hh_bias", "ln_c_bias"):
            expect = "match"  # bias=False
        a[key] = None
    else:
        a["bs"] = bad_batch_sizes(bs, rnd)[0]
    try:
        got = ln_call(cell, a)
    except ERRORS as error:
        assert expect == "raise", f"{type(error).__name__}: {error}"
        assert str(error).strip() and "INTERNAL ASSERT" not in str(error)
        return
    assert expect == "match", "a malformed argument was accepted"
    c_norms = [a["ln_c_weight"], a["ln_c_bias"]] if lstm else [None, None]
    want = reference.layer_norm_direction(cell, a["proj"], a["bs"], a["w"], a["ln_hh_weight"],
                                          a["ln_hh_bias"], *c_norms, a["h0"], a["c0"], False)
    assert_same(got[:-1], [x for x in want if x is not None], 1e-10)
