"""Bad-input fuzzing of the ops and the modules.

Every call built here is malformed (wrong ranks, sizes, dtypes, devices, strides,
batch_sizes that increase, hold zeros or negative values, do not sum to the token count,
live on the wrong device or have the wrong dtype, empty tensors, NaN/Inf, ...) or unusual
but legal. Each one must either raise a Python exception with a message, or return a
result that matches the reference (torch.nn, or the same math written with torch ops).
Never a crash (which would kill pytest), a hang (faulthandler ends the run after
HANG_SECONDS) or an out-of-bounds access (the sanitizer job of .ci/run runs this file
under ASan/UBSan).

The mutations are named; `test_every_op_mutation` and `test_every_module_mutation` try
each of them for each cell, and the hypothesis tests combine them at random.
"""
import faulthandler
import random
import sys

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
import figures
from fastrnn.ops import CELLS

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

ALL_CELLS = list(CELLS)
ERRORS = (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError)
HANG_SECONDS = 300


@pytest.fixture(autouse=True)
def no_hang():
    # sys.__stderr__: pytest may have replaced sys.stderr by an object without a file number
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


def run_call(fn):
    """("ok", result) or ("error", exception); other exception types fail the test."""
    figures.count("bad_inputs")
    try:
        return "ok", fn()
    except ERRORS as e:
        msg = str(e)
        assert msg.strip(), f"{type(e).__name__} without a message"
        assert "INTERNAL ASSERT" not in msg and "internal error" not in msg, msg
        return "error", e


def assert_same(got, want, tol):
    got = [g for g in got if isinstance(g, torch.Tensor)]
    want = [w for w in want if isinstance(w, torch.Tensor)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        assert torch.equal(g.isnan(), w.isnan()), "NaN positions differ"
        assert torch.equal(g.isinf(), w.isinf()), "Inf positions differ"
        finite = w.isfinite()
        torch.testing.assert_close(g[finite], w[finite], rtol=tol, atol=tol, equal_nan=True)


# --- the ops ------------------------------------------------------------------------------

def reference_op(cell, proj, batch_sizes, w, b, h0, c0, reverse):
    """The op's math with torch ops, step by step (as torch.nn computes it)."""
    sizes = batch_sizes.tolist()
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    h, c = h0.clone(), (c0.clone() if c0 is not None else None)
    out = proj.new_zeros(proj.shape[0], w.shape[1])
    steps = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    for t in steps:
        n, off = sizes[t], offsets[t]
        gx, hp = proj[off:off + n], h[:n]
        gh = hp @ w.t() + (b if b is not None else 0)
        if cell == "lstm":
            i, f, g, o = (gx + gh).chunk(4, 1)
            c_new = torch.sigmoid(f) * c[:n] + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            c[:n] = c_new
        elif cell == "gru":
            xr, xz, xn = gx.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h_new = (1 - z) * torch.tanh(xn + r * hn) + z * hp
        elif cell == "rnn_tanh":
            h_new = torch.tanh(gx + gh)
        else:
            h_new = torch.relu(gx + gh)
        h[:n] = h_new
        out[off:off + n] = h_new
    return (out, h, c) if cell == "lstm" else (out, h)


def random_batch_sizes(rnd, batch, steps):
    lengths = sorted((rnd.randint(1, steps) for _ in range(batch)), reverse=True)
    lengths[0] = steps
    return [sum(1 for n in lengths if n > t) for t in range(steps)]


def valid_op_args(cell, rnd, dtype=torch.float64):
    gates = CELLS[cell][0]
    hidden, batch, steps = rnd.randint(1, 5), rnd.randint(1, 4), rnd.randint(1, 5)
    sizes = random_batch_sizes(rnd, batch, steps)
    gen = torch.Generator().manual_seed(rnd.randrange(2**31))

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, generator=gen)

    args = dict(proj=rand(sum(sizes), gates * hidden), bs=torch.tensor(sizes),
                w=rand(gates * hidden, hidden) / hidden ** 0.5,
                b=rand(gates * hidden) if rnd.random() < 0.7 else None,
                h0=rand(batch, hidden), c0=rand(batch, hidden) if cell == "lstm" else None,
                reverse=rnd.random() < 0.5)
    return args


def call_forward(cell, a):
    op = getattr(torch.ops.fastrnn, f"{cell}_forward").default
    states = [a["h0"], a["c0"]] if cell == "lstm" else [a["h0"]]
    return op(a["proj"], a["bs"], a["w"], a["b"], *states, a["reverse"])


def other_dtype(t, rnd):
    choices = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32,
               torch.int64, torch.bool, torch.complex64]
    return t.to(rnd.choice([d for d in choices if d != t.dtype]))


def wrong_shape(t, rnd):
    """A tensor whose shape differs from t's (rank or one size)."""
    kind = rnd.choice(["flat", "unsqueeze", "grow", "shrink"] if t.dim() else ["unsqueeze"])
    if kind == "flat" and t.dim() != 1:
        return t.reshape(-1)
    if kind == "unsqueeze" or kind == "flat":
        return t.unsqueeze(rnd.randint(0, t.dim()))
    dim = rnd.randrange(t.dim())
    if kind == "grow" or t.shape[dim] == 0:
        extra = list(t.shape)
        extra[dim] = rnd.randint(1, 3)
        return torch.cat([t, torch.zeros(extra, dtype=t.dtype)], dim)
    return t.narrow(dim, 0, t.shape[dim] - 1)


def noncontiguous(t, rnd):
    """The same values through a non-contiguous (or zero-stride) view."""
    kind = rnd.choice(["transpose", "step", "expand"])
    if kind == "expand" and t.dim() >= 1 and t.shape[0] > 0:
        # zero stride along dim 0: every row the same
        return t[:1].expand(t.shape), "expand"
    if kind == "transpose" and t.dim() == 2:
        return t.t().contiguous().t(), kind
    big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype) if t.dim() else t
    if t.dim():
        big[..., ::2] = t
        return big[..., ::2], "step"
    return t, "none"


def bad_batch_sizes(bs, rnd):
    sizes = bs.tolist()
    kind = rnd.choice(["increase", "zero", "negative", "sum_more", "sum_less", "first", "int32",
                       "float", "bool", "2d", "scalar", "meta", "empty", "huge", "min"])
    if kind == "increase":
        sizes = sizes + [sizes[-1] + 1] if len(sizes) == 1 else \
            [sizes[0]] + [sizes[0] + 1] + sizes[2:]
    elif kind == "zero":
        sizes[rnd.randrange(len(sizes))] = 0
    elif kind == "negative":
        sizes[rnd.randrange(len(sizes))] = -rnd.randint(1, 2**40)
    elif kind == "sum_more":
        sizes.append(1)
    elif kind == "sum_less":
        if sizes[-1] > 1:
            sizes[-1] -= 1
        else:
            sizes.pop()
    elif kind == "first":
        sizes = [s + 1 for s in sizes]
    elif kind == "huge":
        sizes[rnd.randrange(len(sizes))] = 2**62
    elif kind == "min":
        sizes[rnd.randrange(len(sizes))] = -2**63
    out = torch.tensor(sizes, dtype=torch.int64)
    if kind == "int32":
        out = out.int()
    elif kind == "float":
        out = out.float()
    elif kind == "bool":
        out = out.bool()
    elif kind == "2d":
        out = out.view(1, -1)
    elif kind == "scalar":
        out = out[0]
    elif kind == "meta":
        out = out.to("meta")
    elif kind == "empty":
        out = out[:0]
    return out, kind


# name -> f(args, rnd, cell) returning (args, expectation): "raise", "match" or "either"
def _set(a, key, value):
    a = dict(a)
    a[key] = value
    return a


def m_replace(key, transform):
    """Replace tensor `key` by transform(tensor, rnd): must raise (absent tensors: match)."""
    def f(a, rnd, cell):
        if a[key] is None:
            return a, "match"
        return _set(a, key, transform(a[key], rnd)), "raise"
    return f


def m_shape(key):
    return m_replace(key, wrong_shape)


def m_dtype(key):
    return m_replace(key, other_dtype)


def m_device(key):
    return m_replace(key, lambda t, rnd: t.to("meta"))


def m_strides(key):
    def f(a, rnd, cell):
        if a[key] is None:
            return a, "match"
        return _set(a, key, noncontiguous(a[key], rnd)[0]), "match"
    return f


def m_nonfinite(key):
    def f(a, rnd, cell):
        if a[key] is None or a[key].numel() == 0:
            return a, "match"
        t = a[key].clone()
        for _ in range(rnd.randint(1, 3)):
            t.view(-1)[rnd.randrange(t.numel())] = rnd.choice([float("nan"), float("inf"),
                                                               -float("inf")])
        return _set(a, key, t), "match"
    return f


def m_batch_sizes(a, rnd, cell):
    bs, kind = bad_batch_sizes(a["bs"], rnd)
    if kind == "empty" and a["proj"].shape[0] == 0:
        return _set(a, "bs", bs), "match"
    return _set(a, "bs", bs), "raise"


def m_batch_sizes_strided(a, rnd, cell):
    big = torch.zeros(2 * a["bs"].numel(), dtype=torch.int64)
    big[::2] = a["bs"]
    return _set(a, "bs", big[::2]), "match"


def m_no_steps(a, rnd, cell):
    """Zero steps: the states come back unchanged."""
    a = _set(a, "proj", a["proj"][:0])
    return _set(a, "bs", a["bs"][:0]), "match"


def m_zero_batch(a, rnd, cell):
    a = m_no_steps(a, rnd, cell)[0]
    a = _set(a, "h0", a["h0"][:0])
    if a["c0"] is not None:
        a = _set(a, "c0", a["c0"][:0])
    return a, "match"


def m_zero_hidden(a, rnd, cell):
    """hidden_size 0 (every tensor but batch_sizes empty): refused, like torch.nn's
    hidden_size=0 (found by UBSan: memcpy from the null data of an empty tensor)."""
    for key in ("proj", "w", "b", "h0", "c0"):
        if a[key] is not None:
            a = _set(a, key, a[key][..., :0] if key != "w" else a[key][:0, :0])
    if a["b"] is not None:
        a = _set(a, "b", a["b"][:0])
    return a, "raise"


def m_weight_transposed(a, rnd, cell):
    if CELLS[cell][0] == 1:
        return a, "match"  # square: a transposed weight is a valid (other) weight
    return _set(a, "w", a["w"].t()), "raise"


def m_none(a, rnd, cell):
    key = rnd.choice(["proj", "bs", "w", "h0"] + (["c0"] if cell == "lstm" else []))
    return _set(a, key, None), "raise"


def m_not_tensor(a, rnd, cell):
    key = rnd.choice(["proj", "bs", "w", "b", "h0"])
    value = rnd.choice([1.5, [1, 2], "x", 3])
    return _set(a, key, value), "raise"


def m_reverse(a, rnd, cell):
    # (None, 2.5, 1j or a 0-d tensor pass torch's own bool conversion of the schema)
    return _set(a, "reverse", rnd.choice(["yes", [True], torch.zeros(2), (1, 2)])), "raise"


def m_all_int(a, rnd, cell):
    dtype = rnd.choice([torch.int64, torch.int32, torch.bool, torch.complex128])
    for key in ("proj", "w", "b", "h0", "c0"):
        if a[key] is not None:
            a = _set(a, key, a[key].to(dtype))
    return a, "raise"


def m_batch_mismatch(a, rnd, cell):
    key = rnd.choice(["h0", "c0"] if cell == "lstm" else ["h0"])
    t = a[key]
    t = torch.cat([t, t[:1]]) if rnd.random() < 0.5 or t.shape[0] == 1 else t[:-1]
    return _set(a, key, t), "raise"


OP_MUTATIONS = {
    "proj shape": m_shape("proj"), "proj dtype": m_dtype("proj"), "proj device": m_device("proj"),
    "proj strides": m_strides("proj"), "proj nan/inf": m_nonfinite("proj"),
    "w shape": m_shape("w"), "w dtype": m_dtype("w"), "w device": m_device("w"),
    "w strides": m_strides("w"), "w nan/inf": m_nonfinite("w"), "w transposed": m_weight_transposed,
    "b shape": m_shape("b"), "b dtype": m_dtype("b"), "b device": m_device("b"),
    "b strides": m_strides("b"), "b nan/inf": m_nonfinite("b"),
    "h0 shape": m_shape("h0"), "h0 dtype": m_dtype("h0"), "h0 device": m_device("h0"),
    "h0 strides": m_strides("h0"), "h0 nan/inf": m_nonfinite("h0"),
    "c0 shape": m_shape("c0"), "c0 dtype": m_dtype("c0"), "c0 device": m_device("c0"),
    "c0 strides": m_strides("c0"), "c0 nan/inf": m_nonfinite("c0"),
    "state batch": m_batch_mismatch,
    "batch_sizes": m_batch_sizes, "batch_sizes strides": m_batch_sizes_strided,
    "no steps": m_no_steps, "zero batch": m_zero_batch, "zero hidden": m_zero_hidden,
    "None argument": m_none, "not a tensor": m_not_tensor, "reverse": m_reverse,
    "integer tensors": m_all_int,
}


def assert_clear_op_error(e):
    """Op errors come from fastrnn's checks ("fastrnn: ...") or torch's schema parser."""
    msg = str(e)
    assert msg.startswith("fastrnn:") or "Expected a value of type" in msg or \
        "fastrnn::" in msg or isinstance(e, TypeError), f"unclear error: {msg[:300]}"


def check_op_forward(cell, args, expect):
    status, result = run_call(lambda: call_forward(cell, args))
    if expect == "raise":
        assert status == "error", "no error for a malformed call"
        assert_clear_op_error(result)
        return
    if status == "error":
        assert expect == "either", f"{type(result).__name__}: {result}"
        return
    want = reference_op(cell, args["proj"], args["bs"].contiguous(), args["w"], args["b"],
                        args["h0"], args["c0"], args["reverse"])
    assert_same(result[:len(want)], want, 1e-10)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("name", list(OP_MUTATIONS))
def test_every_op_mutation(cell, name):
    rnd = random.Random(f"{cell}/{name}")
    for _ in range(3):
        args, expect = OP_MUTATIONS[name](valid_op_args(cell, rnd), rnd, cell)
        check_op_forward(cell, args, expect)


@given(st.sampled_from(ALL_CELLS), st.lists(st.sampled_from(list(OP_MUTATIONS)), min_size=1,
                                             max_size=3), st.integers(0, 2**32 - 1))
def test_fuzz_op_forward(cell, names, seed):
    """One to three mutations at once: must raise if any of them must."""
    rnd = random.Random(seed)
    args, expects = valid_op_args(cell, rnd), []
    for name in names:
        try:
            args, expect = OP_MUTATIONS[name](args, rnd, cell)
        except Exception:  # a mutation that does not apply to an already mutated argument
            continue
        expects.append(expect)
    expect = "raise" if "raise" in expects else ("either" if "either" in expects or
                                                  len(expects) > 1 else "match")
    if expect == "either" or len(expects) > 1:
        # combined legal mutations (e.g. no steps + nan) are legal too, but keep it simple:
        # only require no crash and, for errors, a message.
        run_call(lambda: call_forward(cell, args))
    else:
        check_op_forward(cell, args, expect)


# backward ops: mutate one argument of a valid call

def valid_backward_args(cell, rnd, dtype=torch.float64):
    a = valid_op_args(cell, rnd, dtype)
    outputs = call_forward(cell, a)
    gen = torch.Generator().manual_seed(rnd.randrange(2**31))
    grads = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs[:-1]]
    b = dict(grad_output=grads[0], grad_h_n=grads[1], grad_c_n=grads[2] if cell == "lstm" else None,
             bs=a["bs"], w=a["w"], h0=a["h0"], c0=a["c0"], output=outputs[0],
             workspace=outputs[-1], reverse=a["reverse"])
    return b


def call_backward(cell, b):
    op = getattr(torch.ops.fastrnn, f"{cell}_backward").default
    if cell == "lstm":
        return op(b["grad_output"], b["grad_h_n"], b["grad_c_n"], b["bs"], b["w"], b["h0"],
                  b["c0"], b["output"], b["workspace"], b["reverse"])
    return op(b["grad_output"], b["grad_h_n"], b["bs"], b["w"], b["h0"], b["output"],
              b["workspace"], b["reverse"])


BACKWARD_KEYS = ["grad_output", "grad_h_n", "grad_c_n", "w", "h0", "c0", "output", "workspace"]


def backward_mutation(b, rnd, cell):
    kind = rnd.choice(["shape", "dtype", "device", "strides", "nan", "batch_sizes"])
    if kind == "batch_sizes":
        bs, bkind = bad_batch_sizes(b["bs"], rnd)
        return _set(b, "bs", bs), ("match" if bkind == "empty" and b["output"].shape[0] == 0
                                   else "raise")
    keys = [k for k in BACKWARD_KEYS if b[k] is not None]
    if cell.startswith("rnn"):
        keys.remove("workspace")  # RNN backward does not read the (empty) workspace
    key = rnd.choice(keys)
    t = b[key]
    if kind == "shape":
        return _set(b, key, wrong_shape(t, rnd)), "raise"
    if kind == "dtype":
        return _set(b, key, other_dtype(t, rnd)), "raise"
    if kind == "device":
        return _set(b, key, t.to("meta")), "raise"
    if kind == "strides":
        return _set(b, key, noncontiguous(t, rnd)[0]), "match"
    t = t.clone()
    if t.numel():
        t.view(-1)[rnd.randrange(t.numel())] = rnd.choice([float("nan"), float("inf")])
    return _set(b, key, t), "match"


def check_op_backward(cell, b, expect):
    status, result = run_call(lambda: call_backward(cell, b))
    if expect == "raise":
        assert status == "error", "no error for a malformed backward call"
        assert_clear_op_error(result)
        return
    assert status == "ok", f"{type(result).__name__}: {result}"
    clean = {k: (v.contiguous() if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
    want = call_backward(cell, clean)
    assert_same(result, want, 0)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_every_backward_mutation(cell):
    rnd = random.Random(cell)
    for _ in range(40):
        b, expect = backward_mutation(valid_backward_args(cell, rnd), rnd, cell)
        check_op_backward(cell, b, expect)


@given(st.sampled_from(ALL_CELLS), st.integers(0, 2**32 - 1))
def test_fuzz_op_backward(cell, seed):
    rnd = random.Random(seed)
    b, expect = backward_mutation(valid_backward_args(cell, rnd), rnd, cell)
    check_op_backward(cell, b, expect)


# --- the modules --------------------------------------------------------------------------

PAIRS = {"lstm": (torch.nn.LSTM, fastrnn.LSTM), "gru": (torch.nn.GRU, fastrnn.GRU),
         "rnn_tanh": (torch.nn.RNN, fastrnn.RNN), "rnn_relu": (torch.nn.RNN, fastrnn.RNN)}


def module_pair(cell, rnd):
    kwargs = dict(num_layers=rnd.randint(1, 2), bidirectional=rnd.random() < 0.5,
                  batch_first=rnd.random() < 0.5, bias=rnd.random() < 0.8)
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
    size, hidden = rnd.randint(1, 4), rnd.randint(1, 4)
    torch.manual_seed(rnd.randrange(2**31))
    ref = PAIRS[cell][0](size, hidden, **kwargs).double()
    ours = PAIRS[cell][1](size, hidden, **kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours, size, hidden


def module_input(ref, size, rnd):
    steps, batch = rnd.randint(1, 4), rnd.randint(1, 3)
    x = torch.randn(steps, batch, size, dtype=torch.float64)
    lengths = torch.tensor(sorted((rnd.randint(1, steps) for _ in range(batch)), reverse=True))
    lengths[0] = steps
    lengths = lengths[torch.randperm(batch)]
    if ref.batch_first:
        x = x.transpose(0, 1).contiguous()
    return x, lengths


def module_state(ref, batch, unbatched=False):
    lead = (ref.num_layers * (2 if ref.bidirectional else 1),) + (() if unbatched else (batch,))
    h = torch.randn(*lead, ref.hidden_size, dtype=torch.float64)
    if isinstance(ref, torch.nn.LSTM):
        return (h, torch.randn(*lead, ref.hidden_size, dtype=torch.float64))
    return h


def module_mutation(ref, size, rnd):
    """(input, hx, expectation): "torch" = compare with torch.nn (both raise or both match),
    "raise" = fastrnn must raise (torch.nn is not called: it may not check this itself)."""
    x, lengths = module_input(ref, size, rnd)
    batch = x.shape[0] if ref.batch_first else x.shape[1]
    hx = module_state(ref, batch) if rnd.random() < 0.5 else None
    kind = rnd.choice(["rank", "features", "dtype", "device", "strides", "nan", "empty_time",
                       "empty_batch", "hx_shape", "hx_rank", "hx_dtype", "hx_device", "hx_kind",
                       "hx_strides", "packed_batch_sizes", "packed_indices", "packed_data",
                       "unbatched_hx"])
    if kind == "rank":
        x = x.reshape(-1) if rnd.random() < 0.5 else x.unsqueeze(-1)
    elif kind == "features":
        x = torch.cat([x, x[..., :1]], -1)
    elif kind == "dtype":
        x = other_dtype(x, rnd)
    elif kind == "device":
        x = x.to("meta")
    elif kind == "strides":
        x = noncontiguous(x, rnd)[0]
    elif kind == "nan":
        x = x.clone()
        x.view(-1)[rnd.randrange(x.numel())] = rnd.choice([float("nan"), float("inf")])
    elif kind == "empty_time":
        x = x[:, :0] if ref.batch_first else x[:0]
    elif kind == "empty_batch":
        x = x[:0] if ref.batch_first else x[:, :0]
        hx = None
    elif kind.startswith("hx"):
        hx = module_state(ref, batch)
        parts = list(hx) if isinstance(hx, tuple) else [hx]
        i = rnd.randrange(len(parts))
        if kind == "hx_shape":
            parts[i] = wrong_shape(parts[i], rnd)
        elif kind == "hx_rank":
            parts[i] = parts[i][0]
        elif kind == "hx_dtype":
            parts[i] = other_dtype(parts[i], rnd)
        elif kind == "hx_device":
            parts[i] = parts[i].to("meta")
        elif kind == "hx_strides":
            parts[i] = noncontiguous(parts[i], rnd)[0]
        hx = tuple(parts) if isinstance(hx, tuple) else parts[0]
        if kind == "hx_kind":
            hx = hx[0] if isinstance(hx, tuple) else (hx, hx)
    elif kind == "unbatched_hx":
        x = x[0] if ref.batch_first else x[:, 0]
        hx = module_state(ref, 1, unbatched=rnd.random() < 0.5)
    elif kind.startswith("packed"):
        packed = pack_padded_sequence(x, lengths, batch_first=ref.batch_first,
                                      enforce_sorted=False)
        data, bs, si, ui = packed
        if kind == "packed_batch_sizes":
            try:
                packed = PackedSequence(data, bad_batch_sizes(bs, rnd)[0], si, ui)
            except ValueError:  # refused by PackedSequence itself (batch_sizes not on the CPU)
                return None, None, "skip"
            return packed, hx, "raise"
        if kind == "packed_data":
            data = data[:-1] if rnd.random() < 0.5 else wrong_shape(data, rnd)
            return PackedSequence(data, bs, si, ui), hx, "raise"
        # sorted/unsorted indices of the wrong length or out of range (index_select checks)
        bad = torch.tensor(rnd.choice([[0] * (batch + 1), [batch + 5] * batch,
                                       [-batch - 3] * batch]))
        si, ui = (bad, ui) if rnd.random() < 0.5 else (si, bad)
        return PackedSequence(data, bs, si, ui), hx, "torch"
    return x, hx, "torch"


def flat(result):
    output, hidden = result
    out = output.data if isinstance(output, PackedSequence) else output
    return [out] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def check_module_call(ref, ours, inp, hx, expect):
    figures.count("bad_inputs")
    if expect == "skip":
        return
    try:
        status, got = "ok", ours(inp, hx)
    except Exception as e:  # noqa: BLE001 - compared with torch.nn's exception below
        status, got = "error", e
        assert str(e).strip() and "INTERNAL ASSERT" not in str(e), repr(e)
    if status == "error" and expect == "raise":
        assert isinstance(got, ERRORS), repr(got)
    if expect == "raise":
        assert status == "error", "fastrnn accepted a malformed PackedSequence"
        return
    try:
        want = ("ok", ref(inp, hx))
    except Exception as e:  # noqa: BLE001 - whatever torch.nn raises, fastrnn must raise too
        want = ("error", e)
    if want[0] == "error":
        assert status == "error", f"torch.nn raised {want[1]!r}, fastrnn did not"
        assert isinstance(got, type(want[1])) or isinstance(want[1], type(got)), (got, want[1])
        return
    if status == "error" and str(got).startswith("fastrnn:"):
        # A clear refusal where torch.nn is lax, e.g. torch.nn.LSTM casts a c0 of any
        # dtype to the module's; fastrnn's ops check every dtype.
        return
    assert status == "ok", f"torch.nn accepted this call, fastrnn raised {got!r}"
    assert_same(flat(got), flat(want[1]), 1e-10)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_every_module_mutation(cell):
    rnd = random.Random(cell)
    for _ in range(60):
        ref, ours, size, _ = module_pair(cell, rnd)
        check_module_call(ref, ours, *module_mutation(ref, size, rnd))


@given(st.sampled_from(ALL_CELLS), st.integers(0, 2**32 - 1))
def test_fuzz_modules(cell, seed):
    rnd = random.Random(seed)
    ref, ours, size, _ = module_pair(cell, rnd)
    check_module_call(ref, ours, *module_mutation(ref, size, rnd))
