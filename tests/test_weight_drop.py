"""weight_drop: DropConnect on weight_hh (AWD-LSTM's WeightDrop), one mask per forward, on the
fused recurrence. Checked against torch.nn run on the very weights fastrnn drops."""
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from helpers import TOL, torch_module

CLASSES = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn_tanh": fastrnn.RNN}


def make(cell, p, dtype=torch.float64, **kwargs):
    extra = {"nonlinearity": "tanh"} if cell == "rnn_tanh" else {}
    torch.manual_seed(0)
    ours = CLASSES[cell](4, 5, weight_drop=p, **extra, **kwargs).to(dtype)
    torch.manual_seed(0)
    ref = torch_module(cell, 4, 5, **kwargs).to(dtype)
    return ours, ref


def dropped(module, p):
    """torch.nn's parameters with each weight_hh dropped as fastrnn's forward does (the same
    order of dropout calls, so the same masks from the same seed)."""
    return {name: F.dropout(getattr(module, name), p=p, training=True)
            if name.startswith("weight_hh") else getattr(module, name)
            for name in module._flat_weights_names}


@pytest.mark.parametrize("cell", list(CLASSES))
@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True)])
def test_weight_drop_matches_torch_nn_on_the_dropped_weights(cell, layout, kwargs):
    p = 0.4
    ours, ref = make(cell, p, **kwargs)
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    data = pack_padded_sequence(x, lengths, enforce_sorted=False) if layout == "packed" else x

    def loss(out, hidden):
        h = hidden[0] if cell == "lstm" else hidden
        return ((out.data if layout == "packed" else out) ** 2).sum() + h.sum()

    torch.manual_seed(7)
    got = loss(*ours(data))
    torch.manual_seed(7)
    want = loss(*functional_call(ref, dropped(ref, p), (data,)))
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    got_grads = torch.autograd.grad(got, [x, *ours.parameters()], retain_graph=True)
    want_grads = torch.autograd.grad(want, [x, *ref.parameters()])
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_weight_drop_masks_are_reproducible_and_fresh_per_forward():
    ours, _ = make("lstm", 0.5, dtype=torch.float32)
    x = torch.randn(5, 2, 4)
    torch.manual_seed(3)
    first, again = ours(x)[0], ours(x)[0]
    torch.manual_seed(3)
    assert torch.equal(ours(x)[0], first)  # bitwise, from torch's generator
    assert not torch.equal(first, again)  # a new mask each forward


def test_weight_drop_is_identity_at_eval_and_zero_is_todays_module():
    ours, ref = make("gru", 0.3, dtype=torch.float32)
    plain = fastrnn.GRU(4, 5)
    plain.load_state_dict(ours.state_dict(), strict=True)  # the same state_dict keys
    assert ours.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(5, 2, 4)
    ours.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL[torch.float32])
    zero, ref = make("lstm", 0.0, dtype=torch.float32)
    torch.testing.assert_close(zero(x)[0], ref(x)[0], **TOL[torch.float32])
    assert repr(zero) == "fastrnn." + repr(ref)


def test_weight_drop_expectation_is_the_plain_recurrent_product():
    # DropConnect scales the kept weights by 1/(1-p): on average over masks, weight_hh.
    ours, _ = make("rnn_tanh", 0.5)
    mean = torch.stack([ours._weights()[1] for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, ours.weight_hh_l0, rtol=0, atol=0.1)
    kept = (ours._weights()[1] != 0).double().mean()
    assert 0.3 < kept < 0.7


def test_weight_drop_gradcheck():
    ours, _ = make("lstm", 0.3, batch_first=True)
    x = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)

    def run(x, *weights):
        torch.manual_seed(11)  # the same mask on every evaluation
        params = dict(zip(ours._flat_weights_names, weights))
        out, (h, c) = functional_call(ours, params, (x,))
        return out, h, c

    assert torch.autograd.gradcheck(run, (x, *ours._flat_weights))


@pytest.mark.parametrize("p", [-0.1, 1.0, 2, "0.5", True])
def test_weight_drop_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="weight_drop"):
        fastrnn.LSTM(4, 5, weight_drop=p)


@pytest.mark.parametrize("p", [np.float32(0.25), np.float64(0.5), np.int64(0), Fraction(1, 4)])
def test_any_real_number_is_a_probability(p):
    """As torch.nn's dropout takes it (numpy scalars from a config, fractions)."""
    torch.nn.LSTM(4, 5, dropout=p)  # torch.nn accepts these
    for name in ("weight_drop", "zoneout"):
        module = fastrnn.GRU(4, 5, **{name: p})
        assert getattr(module, name) == float(p) and type(getattr(module, name)) is float
