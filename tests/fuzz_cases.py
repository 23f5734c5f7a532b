"""One differential case: a fastrnn module against torch.nn with the same weights and input.

A case is a plain dict (so that a failing case found by the fuzzer can be pasted into
tests/test_fuzz_regressions.py as it is):

    cell        lstm | gru | rnn_tanh | rnn_relu
    layers, bidirectional, bias, batch_first, proj_size (LSTM only; 0 = none)
    input_size, hidden, dtype ("float32" | "float64")
    kind        packed | sequence (pack_sequence) | padded | unbatched
    lengths     one length >= 1 per batch row (packed/sequence); for padded, len(lengths)
                rows of max(lengths) steps; unbatched uses lengths[0] steps
    enforce_sorted  (packed/sequence) pass enforce_sorted=True; only used when the lengths
                are sorted in decreasing order
    with_hx     give an initial state (requires grad) or not
    seed        for the weights and data
    zoneout     (optional; proj_size 0) p of fastrnn's zoneout, which torch.nn lacks: the
                module in training against itself on the plain-ops path (fastrnn/reference.py)
                fed the very masks its fused forward drew
"""
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import fastrnn
import figures
from fastrnn import functional

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TOL = {"float32": 1e-5, "float64": 1e-10}
FAST = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn_tanh": fastrnn.RNN, "rnn_relu": fastrnn.RNN}
REF = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN,
       "rnn_relu": torch.nn.RNN}


def make_modules(case):
    kwargs = dict(num_layers=case["layers"], bias=case["bias"], batch_first=case["batch_first"],
                  bidirectional=case["bidirectional"], dtype=DTYPES[case["dtype"]])
    if case["cell"].startswith("rnn"):
        kwargs["nonlinearity"] = case["cell"][4:]
    if case.get("proj_size"):
        kwargs["proj_size"] = case["proj_size"]
    torch.manual_seed(case["seed"])
    ref = REF[case["cell"]](case["input_size"], case["hidden"], **kwargs)
    ours = FAST[case["cell"]](case["input_size"], case["hidden"], **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def make_input(case, gen):
    """(module input, input leaf, batch or None)."""
    dtype = DTYPES[case["dtype"]]
    lengths = case["lengths"]
    batch, steps = len(lengths), max(lengths)
    kind = case["kind"]
    if kind == "unbatched":
        x = torch.randn(lengths[0], case["input_size"], dtype=dtype, generator=gen)
        return x.requires_grad_(), x, None
    x = torch.randn(steps, batch, case["input_size"], dtype=dtype, generator=gen)
    if case["batch_first"]:
        x = x.transpose(0, 1).contiguous()
    x.requires_grad_()
    if kind == "padded":
        return x, x, batch
    is_sorted = all(a >= b for a, b in zip(lengths, lengths[1:]))
    enforce = bool(case.get("enforce_sorted")) and is_sorted
    if kind == "sequence":
        rows = [(x[i] if case["batch_first"] else x[:, i])[:n] for i, n in enumerate(lengths)]
        return pack_sequence(rows, enforce_sorted=enforce), x, batch
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=case["batch_first"],
                                  enforce_sorted=enforce)
    return packed, x, batch


def make_hx(case, batch, gen):
    if not case["with_hx"]:
        return None, []
    dtype = DTYPES[case["dtype"]]
    lead = (case["layers"] * (2 if case["bidirectional"] else 1),)
    lead += () if batch is None else (batch,)
    h = torch.randn(*lead, case.get("proj_size") or case["hidden"], dtype=dtype, generator=gen)
    h.requires_grad_()
    if case["cell"] != "lstm":
        return h, [h]
    c = torch.randn(*lead, case["hidden"], dtype=dtype, generator=gen).requires_grad_()
    return (h, c), [h, c]


def flatten(result):
    output, hidden = result
    out = output.data if isinstance(output, PackedSequence) else output
    return [out] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def assert_close(got, want, tol, what):
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    # tol relative to the magnitude of the values compared (relu RNNs can grow large)
    scale = max(1.0, float(want.detach().abs().max())) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def zoneout_forwards(module, inp, hx):
    """(fused results, plain-ops results) of `module` (with zoneout, in training), the plain
    forward fed the masks that the fused one drew."""
    masks, draw = [], functional.zoneout_mask
    plain_needed = functional._plain_ops_needed

    def record(*args):
        masks.append(draw(*args))
        return masks[-1]

    functional.zoneout_mask = record
    try:
        fused = flatten(module(inp, hx))
        replay = iter(masks)
        functional.zoneout_mask = lambda *args: next(replay)
        functional._plain_ops_needed = lambda: True
        plain = flatten(module(inp, hx))
    finally:
        functional.zoneout_mask, functional._plain_ops_needed = draw, plain_needed
    return fused, plain


def check_case(case):
    """Runs one case through both modules and compares outputs, states and every gradient."""
    gen = torch.Generator().manual_seed(case["seed"])
    ref, ours = make_modules(case)
    inp, x, batch = make_input(case, gen)
    hx, hx_leaves = make_hx(case, batch, gen)
    if case.get("zoneout"):
        ours.zoneout = case["zoneout"]
        ref = ours  # compared with its plain-ops self, the same parameters
        got, want = zoneout_forwards(ours, inp, hx)
    else:
        want = flatten(ref(inp, hx))
        got = flatten(ours(inp, hx))
    tol = TOL[case["dtype"]]
    names = ["output", "h_n", "c_n"]
    for g, w, name in zip(got, want, names):
        assert_close(g, w, tol, name)

    weights = [torch.randn(w.shape, dtype=w.dtype, generator=gen) for w in want]
    leaves = [x] + hx_leaves

    def grads(module, outputs):
        loss = sum((o * w).sum() for o, w in zip(outputs, weights))
        return torch.autograd.grad(loss, leaves + list(module.parameters()), allow_unused=True,
                                   retain_graph=True)  # the packing graph is shared

    grad_names = ["input"] + [f"hx[{i}]" for i in range(len(hx_leaves))] + \
        [n for n, _ in ref.named_parameters()]
    for g, w, name in zip(grads(ours, got), grads(ref, want), grad_names):
        assert (g is None) == (w is None), name
        if g is not None:
            assert_close(g, w, tol, f"grad of {name}")
    if not case.get("zoneout"):  # the figure counts comparisons with torch.nn
        figures.count("differential")


def check_second_order(case):
    """Second derivatives: the gradients of (the squared gradients of) every input, state
    and parameter, with create_graph=True, against torch.nn (float64)."""
    case = dict(case, dtype="float64")
    gen = torch.Generator().manual_seed(case["seed"])
    ref, ours = make_modules(case)
    inp, x, batch = make_input(case, gen)
    hx, hx_leaves = make_hx(case, batch, gen)
    results = []
    for module in (ref, ours):
        outputs = flatten(module(inp, hx))
        leaves = [x] + hx_leaves + list(module.parameters())
        loss = sum((o.sin() * (i + 1)).sum() for i, o in enumerate(outputs))
        first = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        used = [(g, leaf) for g, leaf in zip(first, leaves) if g is not None and g.requires_grad]
        penalty = sum((g ** 2).sum() for g, _ in used)
        second = torch.autograd.grad(penalty, leaves, allow_unused=True, retain_graph=True)
        results.append(list(first) + list(second))
    for i, (g, w) in enumerate(zip(results[1], results[0])):
        assert (g is None) == (w is None), i
        if g is not None:
            assert_close(g, w, TOL["float64"], f"{'second' if i >= len(results[0]) // 2 else 'first'}-order gradient {i}")
    figures.count("differential")
