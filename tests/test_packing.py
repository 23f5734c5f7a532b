"""fastrnn.pack_padded_sequence against torch.nn.utils.rnn.pack_padded_sequence: the same
PackedSequence (every field, exactly) and gradients, torch's errors, and its ops."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence as torch_pack

import fastrnn
from fastrnn import pack_padded_sequence


def assert_same_packed(got, want):
    assert type(got) is type(want)
    for field in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
        g, w = getattr(got, field), getattr(want, field)
        if w is None:
            assert g is None, field
        else:
            assert g.dtype == w.dtype and g.device == w.device, field
            assert torch.equal(g, w), field


def padded(batch, steps, tail, batch_first, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, steps) if batch_first else (steps, batch)
    return torch.randn(shape + tail, generator=gen, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("tail", [(), (3,), (2, 3)])
def test_same_packed_sequence_and_gradient_as_torch(batch_first, enforce_sorted, tail):
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 9, (6,), generator=gen)
    if enforce_sorted:
        lengths = lengths.sort(descending=True).values
    x = padded(6, 9, tail, batch_first).requires_grad_()
    want = torch_pack(x, lengths, batch_first, enforce_sorted)
    got = pack_padded_sequence(x, lengths, batch_first, enforce_sorted)
    assert_same_packed(got, want)
    grad = torch.randn(want.data.shape, generator=gen)
    assert torch.equal(torch.autograd.grad(got.data, x, grad)[0],
                       torch.autograd.grad(want.data, x, grad)[0])


@pytest.mark.parametrize("lengths", [[5, 3, 3, 1], (5, 3, 3, 1), torch.tensor([5, 3, 3, 1]),
                                     torch.tensor([5, 3, 3, 1], dtype=torch.int32),
                                     torch.tensor([5.0, 3.0, 3.0, 1.0]), [1, 3, 5, 3], [5, 5, 5, 5],
                                     [1, 1, 1, 1]])
def test_lengths_in_every_form_torch_takes(lengths):
    x = padded(4, 5, (2,), batch_first=True)
    for enforce_sorted in (True, False):
        try:
            want = torch_pack(x, lengths, True, enforce_sorted)
        except RuntimeError as error:
            with pytest.raises(RuntimeError, match=str(error)[:40]):
                pack_padded_sequence(x, lengths, True, enforce_sorted)
            continue
        assert_same_packed(pack_padded_sequence(x, lengths, True, enforce_sorted), want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.int64, torch.bool])
def test_any_dtype(dtype):
    x = padded(3, 4, (2,), batch_first=False, dtype=dtype)
    lengths = [2, 4, 3]
    assert_same_packed(pack_padded_sequence(x, lengths, enforce_sorted=False),
                       torch_pack(x, lengths, enforce_sorted=False))


def test_non_contiguous_input():
    x = padded(5, 4, (3,), batch_first=False).transpose(0, 1)  # [4, 5, 3] view, batch_first
    lengths = [4, 1, 3, 2]
    assert_same_packed(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False),
                       torch_pack(x, lengths, batch_first=True, enforce_sorted=False))


def test_lengths_shorter_than_the_padding():
    x = padded(3, 7, (2,), batch_first=True)
    assert_same_packed(pack_padded_sequence(x, [3, 2, 2], True), torch_pack(x, [3, 2, 2], True))


BAD = [
    ("unsorted with enforce_sorted", [1, 3, 2], True),
    ("a zero length", [3, 2, 0], True),
    ("a negative length", [3, -1, 2], False),
    ("too few lengths", [3, 2], True),
    ("too many lengths", [3, 2, 2, 1], False),
    ("a length over the padding", [9, 2, 1], False),
    ("2-D lengths", torch.tensor([[3, 2, 1]]), True),
]


@pytest.mark.parametrize("name, lengths, enforce_sorted", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_torchs_error(name, lengths, enforce_sorted):
    x = padded(3, 4, (2,), batch_first=True)
    try:
        torch_pack(x, lengths, True, enforce_sorted)
    except Exception as error:  # noqa: BLE001 (whatever torch raises, fastrnn must too)
        with pytest.raises(type(error)) as got:
            pack_padded_sequence(x, lengths, True, enforce_sorted)
        assert str(got.value) == str(error)
    else:  # torch accepts it: so must fastrnn, with the same result
        assert_same_packed(pack_padded_sequence(x, lengths, True, enforce_sorted),
                           torch_pack(x, lengths, True, enforce_sorted))


def test_empty_input_gets_torchs_error():
    x = torch.empty(0, 3, 2)
    with pytest.raises(RuntimeError) as want:
        torch_pack(x, [0, 0, 0], enforce_sorted=False)
    with pytest.raises(RuntimeError) as got:
        pack_padded_sequence(x, [0, 0, 0], enforce_sorted=False)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_gradcheck_and_gradgradcheck(enforce_sorted):
    lengths = [4, 3, 1] if enforce_sorted else [3, 4, 1]
    x = padded(3, 4, (2,), batch_first=True, dtype=torch.float64).requires_grad_()

    def data(x):
        return pack_padded_sequence(x, lengths, True, enforce_sorted).data

    torch.autograd.gradcheck(data, (x,))
    torch.autograd.gradgradcheck(data, (x,))


def test_traced_and_transformed_calls_are_torchs():
    x = padded(3, 4, (2,), batch_first=True)

    def data(x):
        return pack_padded_sequence(x, torch.tensor([2, 4, 3]), True, False).data

    want = torch_pack(x, [2, 4, 3], True, False).data
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(data, (x,))
    assert torch.equal(traced(x), want)
    assert torch.equal(torch.func.vmap(data)(x.unsqueeze(0))[0], want)


def test_forward_ad_gets_torchs_error():
    # torch's packing has no forward-mode derivative: the same error, not a silent one.
    import torch.autograd.forward_ad as fwAD
    x = padded(3, 4, (2,), batch_first=True)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(NotImplementedError) as want:
            torch_pack(dual, [2, 4, 3], True, False)
        with pytest.raises(NotImplementedError) as got:
            pack_padded_sequence(dual, [2, 4, 3], True, False)
    assert str(got.value) == str(want.value)


def test_trains_a_module_as_torchs_does():
    x = padded(4, 6, (5,), batch_first=True).requires_grad_()
    lengths = [3, 6, 1, 4]
    ref = torch.nn.LSTM(5, 3, batch_first=True)
    ours = fastrnn.LSTM(5, 3, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    results = []
    for pack, module in ((torch_pack, ref), (pack_padded_sequence, ours)):
        out, (h, c) = module(pack(x, lengths, True, False))
        results.append([out.data, h, *torch.autograd.grad((out.data.sum() + h.sum()),
                                                          [x, *module.parameters()])])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_ops():
    lengths, order = torch.tensor([3, 2, 2]), torch.tensor([2, 0, 1])
    index, batch_sizes = torch.ops.fastrnn.packed_rows(lengths, order, 4, True)
    # step 0: rows 2, 0, 1; step 1: rows 2, 0, 1; step 2: row 2 (batch_first: row * 4 + step)
    assert index.tolist() == [8, 0, 4, 9, 1, 5, 10]
    assert batch_sizes.tolist() == [3, 3, 1]
    index, _ = torch.ops.fastrnn.packed_rows(lengths, None, 4, False)
    assert index.tolist() == [0, 1, 2, 3, 4, 5, 6]
    rows = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    # Not test_aot_dispatch_dynamic: the op's C++ autograd reads concrete sizes (as the
    # layer ops'); compiled calls of pack_padded_sequence run torch's function anyway.
    torch.library.opcheck(torch.ops.fastrnn.gather_rows.default, (rows, index),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))
    torch.autograd.gradcheck(torch.ops.fastrnn.gather_rows, (rows, index))
    # A repeated index falls back to index_select's own backward (which adds the repeats).
    repeated = torch.tensor([1, 1, 3])
    got = torch.autograd.grad(torch.ops.fastrnn.gather_rows(rows, repeated).sum(), rows)[0]
    assert torch.equal(got, torch.autograd.grad(rows.index_select(0, repeated).sum(), rows)[0])


@pytest.mark.parametrize("args, message", [
    ((torch.tensor([2, 3]), None, 4, True), "sorted in non-increasing order"),
    ((torch.tensor([2, 0]), None, 4, True), r"lengths must be in \[1, 4\]"),
    ((torch.tensor([5, 1]), None, 4, True), r"lengths must be in \[1, 4\]"),
    ((torch.tensor([2, 1], dtype=torch.int32), None, 4, True), "lengths must be a 1-D int64"),
    ((torch.tensor([2, 1]), torch.tensor([0, 0]), 4, True), "must be a permutation"),
    ((torch.tensor([2, 1]), torch.tensor([0]), 4, True), "one entry per row"),
])
def test_packed_rows_bad_input(args, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fastrnn.packed_rows(*args)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@st.composite
def pack_cases(draw):
    batch = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(-1, 8), min_size=batch, max_size=batch))
    if draw(st.booleans()):
        lengths = sorted(lengths, reverse=True)
    return dict(lengths=lengths, steps=max(1, max(lengths)) + draw(st.integers(-1, 2)),
                tail=tuple(draw(st.lists(st.integers(1, 3), max_size=2))),
                batch_first=draw(st.booleans()), enforce_sorted=draw(st.booleans()),
                as_tensor=draw(st.booleans()),
                dtype=draw(st.sampled_from([torch.float32, torch.float64, torch.int64])),
                seed=draw(st.integers(0, 2**31 - 1)))


@given(pack_cases())
def test_fuzz_parity_with_torch(case):
    """Random lengths (invalid ones too), paddings, shapes, flags and dtypes: torch's result
    and gradient, or torch's error."""
    c = case
    batch = len(c["lengths"])
    x = padded(batch, c["steps"], c["tail"], c["batch_first"], c["dtype"], c["seed"])
    if c["dtype"].is_floating_point:
        x.requires_grad_()
    lengths = torch.tensor(c["lengths"]) if c["as_tensor"] else c["lengths"]
    args = (lengths, c["batch_first"], c["enforce_sorted"])
    try:
        want = torch_pack(x, *args)
    except Exception as error:  # noqa: BLE001 (whatever torch raises, fastrnn must too)
        with pytest.raises(type(error)) as got:
            pack_padded_sequence(x, *args)
        assert str(got.value) == str(error)
        return
    got = pack_padded_sequence(x, *args)
    assert_same_packed(got, want)
    if x.requires_grad:
        grad = torch.randn(want.data.shape, generator=torch.Generator().manual_seed(c["seed"]),
                           dtype=x.dtype)
        try:  # torch packs lengths past the padding, and its backward then fails
            want_grad = torch.autograd.grad(want.data, x, grad)[0]
        except Exception as error:  # noqa: BLE001
            with pytest.raises(type(error)) as got_error:
                torch.autograd.grad(got.data, x, grad)
            assert str(got_error.value) == str(error)
            return
        assert torch.equal(torch.autograd.grad(got.data, x, grad)[0], want_grad)


# --- pad_packed_sequence ----------------------------------------------------------------

from torch.nn.utils.rnn import PackedSequence  # noqa: E402
from torch.nn.utils.rnn import pad_packed_sequence as torch_pad  # noqa: E402

from fastrnn import pad_packed_sequence  # noqa: E402


def packed_leaf(lengths, batch_first, enforce_sorted, tail=(3,), dtype=torch.float32, seed=0):
    x = padded(len(lengths), max(lengths) + 1, tail, batch_first, dtype, seed)
    p = torch_pack(x, lengths, batch_first, enforce_sorted)
    data = p.data.clone()
    if dtype.is_floating_point:
        data.requires_grad_()
    return PackedSequence(data, p.batch_sizes, p.sorted_indices, p.unsorted_indices)


def assert_same_padding(packed, *args):
    want = torch_pad(packed, *args)
    got = pad_packed_sequence(packed, *args)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.device == w.device and torch.equal(g, w)
    if packed.data.requires_grad:
        grad = torch.randn(want[0].shape, generator=torch.Generator().manual_seed(3),
                           dtype=want[0].dtype)
        assert torch.equal(torch.autograd.grad(got[0], packed.data, grad)[0],
                           torch.autograd.grad(want[0], packed.data, grad)[0])


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("padding_value, total_length", [(0.0, None), (-2.5, None), (1, 9)])
def test_pad_same_as_torch(batch_first, enforce_sorted, padding_value, total_length):
    lengths = [5, 3, 3, 1] if enforce_sorted else [3, 5, 1, 3]
    packed = packed_leaf(lengths, batch_first, enforce_sorted)
    assert_same_padding(packed, batch_first, padding_value, total_length)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.bool])
@pytest.mark.parametrize("tail", [(), (2, 2)])
def test_pad_any_dtype_and_shape(dtype, tail):
    assert_same_padding(packed_leaf([2, 4, 3], True, False, tail, dtype), True, 0.0, None)


def test_pad_round_trip_with_fastrnn_pack():
    x = padded(4, 6, (3,), batch_first=True)
    lengths = torch.tensor([6, 2, 4, 1])
    out, got_lengths = pad_packed_sequence(
        pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), True)
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    assert torch.equal(got_lengths, lengths)
    assert torch.equal(out, x * mask.unsqueeze(2))


def malformed():
    good = packed_leaf([3, 2, 2], True, False)
    data, bs, s, u = good
    return [
        ("total_length too short", good, dict(total_length=2)),
        ("increasing batch_sizes", PackedSequence(data[:7], torch.tensor([2, 3, 2]), None, None), {}),
        ("data longer than batch_sizes", PackedSequence(data, torch.tensor([3, 3]), None, None), {}),
        ("not a permutation", PackedSequence(data, bs, s, torch.tensor([0, 0, 1])), {}),
    ]


@pytest.mark.parametrize("name, packed, kwargs", malformed(), ids=[m[0] for m in malformed()])
def test_pad_malformed_input_is_torchs(name, packed, kwargs):
    try:
        want = torch_pad(packed, True, **kwargs)
    except Exception as error:  # noqa: BLE001 (whatever torch raises, fastrnn must too)
        with pytest.raises(type(error)) as got:
            pad_packed_sequence(packed, True, **kwargs)
        assert str(got.value) == str(error)
        return
    got = pad_packed_sequence(packed, True, **kwargs)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_pad_gradcheck_and_gradgradcheck():
    packed = packed_leaf([2, 4, 3], True, False, dtype=torch.float64)

    def pad(data):
        return pad_packed_sequence(PackedSequence(data, *packed[1:]), True, -1.0, 6)[0]

    torch.autograd.gradcheck(pad, (packed.data,))
    torch.autograd.gradgradcheck(pad, (packed.data,))


def test_pad_ops():
    positions, lengths = torch.ops.fastrnn.padded_positions(
        torch.tensor([3, 2, 1]), torch.tensor([1, 2, 0]), 4, True)
    # sorted rows 0, 1, 2 sit at places 2, 0, 1; place b's row is b * 4 + step
    assert positions.tolist() == [8, 0, 4, 9, 1, 10]
    assert lengths.tolist() == [2, 1, 3]
    data = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.fastrnn.unpack_rows.default, (data, positions, 12, -1.0),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))
    torch.autograd.gradcheck(lambda d: torch.ops.fastrnn.unpack_rows(d, positions, 12, 0.5),
                             (data,))
    with pytest.raises(RuntimeError, match="distinct rows"):
        torch.ops.fastrnn.unpack_rows(data, torch.tensor([0, 0, 1, 2, 3, 4]), 12, 0.0)
    with pytest.raises(RuntimeError, match="non-increasing"):
        torch.ops.fastrnn.padded_positions(torch.tensor([1, 2]), None, 4, True)
    with pytest.raises(RuntimeError, match="must be at least"):
        torch.ops.fastrnn.padded_positions(torch.tensor([2, 1]), None, 1, True)


@given(pack_cases())
def test_fuzz_pad_parity_with_torch(case):
    """Packed by torch from random valid cases, then padded: torch's result and gradient."""
    c = case
    lengths = [max(1, n) for n in c["lengths"]]
    if c["enforce_sorted"]:
        lengths = sorted(lengths, reverse=True)
    packed = packed_leaf(lengths, c["batch_first"], c["enforce_sorted"], c["tail"], c["dtype"],
                         c["seed"])
    total_length = None if c["as_tensor"] else max(lengths) + abs(c["steps"]) % 3
    assert_same_padding(packed, c["batch_first"], float(c["seed"] % 3), total_length)


def test_torch_names_patched_with_fastrnn_functions(monkeypatch):
    """A user who replaces torch's functions with fastrnn's globally: the cases fastrnn hands to
    torch's own functions (here input torch rejects) reach torch's, not fastrnn's again."""
    monkeypatch.setattr(torch.nn.utils.rnn, "pack_padded_sequence", fastrnn.pack_padded_sequence)
    monkeypatch.setattr(torch.nn.utils.rnn, "pad_packed_sequence", fastrnn.pad_packed_sequence)
    x = torch.randn(4, 2, 3)
    with pytest.raises(RuntimeError, match="greater than 0"):
        fastrnn.pack_padded_sequence(x, [4, 0])
    packed = fastrnn.pack_padded_sequence(x, [4, 2])
    with pytest.raises(ValueError, match="total_length"):
        fastrnn.pad_packed_sequence(packed, total_length=2)
    out, lengths = torch.nn.utils.rnn.pad_packed_sequence(packed)  # now fastrnn's
    assert torch.equal(lengths, torch.tensor([4, 2])) and out.shape == (4, 2, 3)
