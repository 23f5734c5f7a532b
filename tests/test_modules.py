"""fastrnn.LSTM/GRU/RNN against torch.nn across the interface."""
import copy
import gc
import io
import random
import warnings
import weakref

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize, prune
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import fastrnn
from helpers import TOL

PAIRS = {"lstm": (nn.LSTM, fastrnn.LSTM), "gru": (nn.GRU, fastrnn.GRU),
         "rnn_tanh": (nn.RNN, fastrnn.RNN), "rnn_relu": (nn.RNN, fastrnn.RNN)}


def make_pair(cell, *args, **kwargs):
    torch_cls, fast_cls = PAIRS[cell]
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell.split("_")[1]
    ref = torch_cls(*args, **kwargs)
    ours = fast_cls(*args, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def sample_configs(count, seed=0):
    rng = random.Random(seed)
    configs = []
    layouts = ["padded", "unbatched", "sorted", "unsorted", "equal", "ones", "batch1", "sequence"]
    for i in range(count):
        cell = ["lstm", "gru", "rnn_tanh", "rnn_relu"][i % 4]
        hidden = rng.choice([1, 3, 17, 33])
        configs.append(dict(
            cell=cell,
            num_layers=rng.choice([1, 2, 3]),
            bidirectional=rng.random() < 0.5,
            batch_first=rng.random() < 0.3,
            bias=rng.random() < 0.8,
            proj_size=(rng.choice([0, 1, 2]) if cell == "lstm" and hidden > 2 else 0),
            hidden=hidden,
            layout=layouts[(i // 4) % len(layouts)],
            with_hx=rng.random() < 0.5,
            dtype=rng.choice([torch.float32, torch.float64]),
            seed=i,
        ))
    return configs


def build_input(layout, batch_first, dtype, input_size, gen, device="cpu"):
    """(module input, batch, time) for a layout; padded inputs require grad."""
    batch, steps = (1 if layout == "batch1" else 4), 5
    if layout == "unbatched":
        x = torch.randn(steps, input_size, dtype=dtype, generator=gen).to(device)
        return x.requires_grad_(), x, None
    x = torch.randn(steps, batch, input_size, dtype=dtype, generator=gen)
    if batch_first:
        x = x.transpose(0, 1).contiguous()
    x = x.to(device).requires_grad_()
    if layout == "padded":
        return x, x, batch
    lengths = {
        "sorted": torch.tensor([5, 4, 2, 1]),
        "unsorted": torch.tensor([2, 5, 1, 4]),
        "equal": torch.tensor([5, 5, 5, 5]),
        "ones": torch.tensor([1, 1, 1, 1]),
        "batch1": torch.tensor([3]),
        "sequence": torch.tensor([3, 5, 1, 2]),
    }[layout]
    if layout == "sequence":
        seqs = [(x[i] if batch_first else x[:, i])[: int(n)] for i, n in enumerate(lengths)]
        return pack_sequence(seqs, enforce_sorted=False), x, batch
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first,
                                  enforce_sorted=layout not in ("unsorted",))
    return packed, x, batch


def flat_outputs(output, hidden):
    out = output.data if isinstance(output, PackedSequence) else output
    states = list(hidden) if isinstance(hidden, tuple) else [hidden]
    return [out] + states


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", sample_configs(96), ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items() if k not in ("dtype",)) + f"-{str(c['dtype'])[6:]}")
def test_conformance_with_torch_nn(cfg, device):
    # On CUDA against torch.nn on CUDA (cuDNN, deterministic, no TF32).
    gen = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    input_size = 3
    ref, ours = make_pair(cfg["cell"], input_size, cfg["hidden"], num_layers=cfg["num_layers"],
                          bias=cfg["bias"], batch_first=cfg["batch_first"],
                          bidirectional=cfg["bidirectional"], dtype=cfg["dtype"],
                          **({"proj_size": cfg["proj_size"]} if cfg["proj_size"] else {}))
    ref, ours = ref.to(device), ours.to(device)
    inp, leaf, batch = build_input(cfg["layout"], cfg["batch_first"], cfg["dtype"], input_size, gen,
                                   device)
    hx_leaves = []
    hx = None
    if cfg["with_hx"]:
        dirs = 2 if cfg["bidirectional"] else 1
        lead = (cfg["num_layers"] * dirs,) + (() if batch is None else (batch,))
        out_h = cfg["proj_size"] or cfg["hidden"]
        h0 = torch.randn(*lead, out_h, dtype=cfg["dtype"], generator=gen).to(device)
        h0.requires_grad_()
        hx_leaves.append(h0)
        hx = h0
        if cfg["cell"] == "lstm":
            c0 = torch.randn(*lead, cfg["hidden"], dtype=cfg["dtype"], generator=gen).to(device)
            c0.requires_grad_()
            hx_leaves.append(c0)
            hx = (h0, c0)

    got = flat_outputs(*ours(inp, hx))
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        want = flat_outputs(*ref(inp, hx))
    tol = TOL[cfg["dtype"]]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)

    weights = [torch.randn(w.shape, dtype=w.dtype, generator=gen).to(device) for w in want]
    leaves = [leaf] + hx_leaves

    def grads(module, outputs):
        loss = sum((o * w).sum() for o, w in zip(outputs, weights))
        return torch.autograd.grad(loss, leaves + list(module.parameters()), retain_graph=True)

    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        want_grads = grads(ref, want)
    for g, w in zip(grads(ours, got), want_grads):
        torch.testing.assert_close(g, w, **tol)


@pytest.mark.parametrize("cell", list(PAIRS))
def test_parameters_state_dict_and_init_match_torch(cell):
    kwargs = dict(num_layers=2, bidirectional=True)
    if cell == "lstm":
        kwargs["proj_size"] = 2
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell.split("_")[1]
    torch_cls, fast_cls = PAIRS[cell]
    torch.manual_seed(3)
    ref = torch_cls(4, 5, **kwargs)
    torch.manual_seed(3)
    ours = fast_cls(4, 5, **kwargs)
    ref_named = [(n, p.shape) for n, p in ref.named_parameters()]
    assert [(n, p.shape) for n, p in ours.named_parameters()] == ref_named
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)  # same default initialisation from the same seed
    assert repr(ours) == "fastrnn." + repr(ref)
    assert isinstance(ours, torch_cls)
    assert [[tuple(w.shape) for w in layer] for layer in ours.all_weights] == \
        [[tuple(w.shape) for w in layer] for layer in ref.all_weights]
    # strict loading in both directions
    ours.load_state_dict(torch_cls(4, 5, **kwargs).state_dict(), strict=True)
    torch_cls(4, 5, **kwargs).load_state_dict(ours.state_dict(), strict=True)
    ours.flatten_parameters()


def test_constructor_validation_and_warnings_match_torch():
    bad = [
        ((4, 5), dict(dropout=1.5)), ((4, 5), dict(dropout=True)), ((4, 5), dict(proj_size=5)),
        ((4, 5), dict(proj_size=-1)), ((4, 0), {}), ((0, 5), {}), ((4.0, 5), {}),
        ((4, 5), dict(num_layers=0)), ((4, 5), dict(bias=1)), ((4, 5), dict(batch_first="x")),
    ]
    for args, kwargs in bad:
        with pytest.raises(Exception) as want:
            nn.LSTM(*args, **kwargs)
        with pytest.raises(type(want.value), match=str(want.value)[:30].replace("(", r"\(")):
            fastrnn.LSTM(*args, **kwargs)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        fastrnn.RNN(4, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        fastrnn.GRU(4, 5, proj_size=2)
    with pytest.warns(UserWarning, match="dropout option adds dropout after all but last"):
        fastrnn.GRU(4, 5, dropout=0.5)
    # positional arguments as torch.nn takes them
    assert fastrnn.RNN(4, 5, 2, "relu").nonlinearity == "relu"
    assert fastrnn.LSTM(4, 5, 2, False, True).batch_first


def error_cases():
    x = torch.randn(5, 3, 4)
    h = torch.randn(1, 3, 5)
    packed = pack_padded_sequence(x, torch.tensor([5, 3, 2]))
    return [
        ("lstm", "feature size", (torch.randn(5, 3, 6),), {}),
        ("lstm", "rank 4", (torch.randn(5, 3, 4, 1),), {}),
        ("lstm", "h batch", (x, (torch.randn(1, 2, 5), torch.randn(1, 2, 5))), {}),
        ("lstm", "c shape", (x, (torch.randn(1, 3, 5), torch.randn(1, 3, 4))), {}),
        ("lstm", "hx rank", (x, (torch.randn(3, 5), torch.randn(3, 5))), {}),
        ("lstm", "tensor hx", (x, torch.randn(1, 3, 5)), {}),
        ("lstm", "dtype", (x.double(),), {}),
        ("gru", "tuple hx", (x, (torch.randn(1, 3, 5), torch.randn(1, 3, 5))), {}),
        ("gru", "hx layers", (x, torch.randn(2, 3, 5)), {}),
        ("gru", "unbatched hx rank", (x[:, 0], torch.randn(1, 1, 5)), {}),
        ("rnn_tanh", "hx size", (x, torch.randn(1, 3, 6)), {}),
        ("rnn_tanh", "packed feature size",
         (pack_padded_sequence(torch.randn(5, 3, 6), torch.tensor([5, 3, 2])),), {}),
        ("rnn_relu", "hx dtype", (x, torch.randn(1, 3, 5, dtype=torch.float64)), {}),
        ("lstm", "three hx", (x, (h, h, h)), {}),
        ("lstm", "tensor hx packed", (packed, h), {}),
        ("lstm", "one hx packed", (packed, (h,)), {}),
        ("lstm", "one hx padded", (x, [h]), {}),
    ]


@pytest.mark.parametrize("cell,name,args,kwargs", error_cases(), ids=[c[1] for c in error_cases()])
def test_errors_match_torch(cell, name, args, kwargs):
    ref, ours = make_pair(cell, 4, 5)
    with pytest.raises(Exception) as want:
        ref(*args, **kwargs)
    with pytest.raises(Exception) as got:
        ours(*args, **kwargs)
    assert isinstance(got.value, type(want.value)), (got.value, want.value)
    assert str(got.value)


@pytest.mark.parametrize("cell", list(PAIRS))
def test_parameters_changed_after_construction_raise_like_torch(cell):
    x = torch.randn(5, 3, 4)
    for change in ("bias None", "fewer layers", "more layers"):
        pair = make_pair(cell, 4, 5, num_layers=1 if change == "more layers" else 2)
        for module in pair:
            if change == "bias None":
                module.bias_hh_l1 = None
            else:
                module.num_layers = 2 if change == "more layers" else 1
        errors = []
        for module in pair:
            try:
                module(x)
                errors.append(None)
            except (TypeError, RuntimeError) as e:
                errors.append(type(e))
        if cell == "lstm" and change == "fewer layers":
            # torch.nn.LSTM (oneDNN) runs the first layer and ignores the rest; fastrnn
            # refuses the inconsistent module like torch.nn.GRU/RNN.
            assert errors == [None, RuntimeError]
        else:
            assert errors[1] is errors[0] is not None, (change, errors)


@pytest.mark.parametrize("cell,kwargs", [("lstm", {}), ("lstm", {"proj_size": 2}), ("gru", {}),
                                         ("rnn_tanh", {"bidirectional": True})])
def test_backward_frees_what_was_saved_like_torch(cell, kwargs):
    # A graph that outlives backward (losses.append(loss)) must not keep activations: the
    # tensors kept for double backward used to live on in a closure.
    _, ours = make_pair(cell, 3, 4, num_layers=2, **kwargs)
    x = torch.randn(5, 2, 3)
    keep = {id(p) for p in ours.parameters()} | {id(x)}
    saved = []

    def pack(t):
        if id(t) not in keep:
            saved.append(weakref.ref(t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ours(x)[0].sum()
    assert saved
    loss.backward()
    gc.collect()
    alive = [r() for r in saved if r() is not None]
    assert not alive, [tuple(t.shape) for t in alive]


@pytest.mark.parametrize("cell", list(PAIRS))
@pytest.mark.parametrize("special", [1e3, -1e3, float("inf"), -float("inf"), float("nan")])
def test_extreme_and_non_finite_inputs_match_torch(cell, special):
    # Saturated gates are exactly 0/1 (fastrnn's float32 exp used to stop at the smallest
    # normal float), so inf/NaN reach the same outputs and gradients as in torch.nn; a NaN
    # relu output passes its gradient, as torch's threshold_backward does.
    ref, ours = make_pair(cell, 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0)) * 3
    x[1, 0, 1] = special
    results = []
    for module in (ref, ours):
        x_ = x.clone().requires_grad_()
        out, _ = module(x_)
        results.append([out, *torch.autograd.grad(out.sum(), [x_, *module.parameters()])])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[torch.float32], equal_nan=True)


def test_saturated_gate_is_exactly_zero():
    # z = sigmoid(-200) must be 0, not 6e-39: times an h of 1e36 that is not negligible.
    out, _ = fastrnn.gru(torch.tensor([[0.0, -200.0, 0.0]]), torch.tensor([1]),
                         torch.zeros(3, 1), None, torch.tensor([[1e36]]))
    assert out.item() == 0.0


@pytest.mark.parametrize("cell", list(PAIRS))
def test_torch_jit_trace_in_either_grad_mode(cell):
    # The traced graph must not depend on the grad mode: torch.jit.trace checks the trace
    # under no_grad, and a model traced under no_grad must still train.
    _, ours = make_pair(cell, 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    want = ours(x)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(ours, x)
        with torch.no_grad():
            traced_no_grad = torch.jit.trace(ours, x)
    torch.testing.assert_close(traced(x)[0], want, rtol=0, atol=0)
    want_grad = torch.autograd.grad(want.sum(), ours.weight_hh_l0)
    got_grad = torch.autograd.grad(traced_no_grad(x)[0].sum(), ours.weight_hh_l0)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_export_of_lstm_with_projections(bidirectional):
    module = fastrnn.LSTM(3, 4, proj_size=2, bidirectional=bidirectional).eval()
    x = torch.randn(5, 2, 3)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize("packed", [False, True])
def test_lstm_takes_hx_as_a_list_like_torch(packed):
    # torch.nn.LSTM accepts [h0, c0] as well as (h0, c0); fastrnn used to misread the list.
    ref, ours = make_pair("lstm", 4, 5)
    x = torch.randn(6, 3, 4)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([2, 6, 4]), enforce_sorted=False)
    hx = [torch.randn(1, 3, 5), torch.randn(1, 3, 5)]
    want, got = ref(x, hx), ours(x, hx)
    for w, g in zip(flat_outputs(want[0], want[1]), flat_outputs(got[0], got[1])):
        torch.testing.assert_close(g, w, **TOL[torch.float32])


@pytest.mark.parametrize("cell", list(PAIRS))
@pytest.mark.parametrize("packed", [False, True])
def test_outputs_can_be_changed_in_place_like_torch(cell, packed):
    # e.g. `out += residual` or relu_(out): the op saves its output for backward, so the
    # module returned that very tensor and backward then refused. torch.nn's CPU modules
    # return a fresh tensor (except its float32 padded LSTM through oneDNN, which refuses).
    ref, ours = make_pair(cell, 4, 5, dtype=torch.float64)
    grads = []
    for module in (ref, ours):
        x = torch.randn(6, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
        inp = pack_padded_sequence(x, torch.tensor([2, 6, 4]), enforce_sorted=False) if packed else x
        out, hidden = module(inp)
        flat = flat_outputs(out, hidden)
        for t in flat:
            t.mul_(2)
        sum((t ** 2).sum() for t in flat).backward()
        grads.append([x.grad] + [p.grad for p in module.parameters()])
    for want, got in zip(*grads):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("proj_size", [0, 20])
def test_lstm_matches_torch_at_a_large_hidden_size(packed, proj_size):
    # proj_size runs the fused recurrence over W_hh @ W_hr; for inference at this size
    # torch.nn's own implementation is faster on the CPU and is used (bitwise equal), as
    # it is on padded batches (oneDNN). Packed inference without projections stays fused.
    ref, ours = make_pair("lstm", 6, 300, proj_size=proj_size, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 6, requires_grad=True)
    inp = pack_padded_sequence(x, torch.tensor([5, 2, 4]), enforce_sorted=False) if packed else x
    with torch.no_grad():
        exact = dict(rtol=0, atol=0) if proj_size or not packed else TOL[torch.float32]
        for g, w in zip(flat_outputs(*ours(inp)), flat_outputs(*ref(inp))):
            torch.testing.assert_close(g, w, **exact)
    results = []
    for module in (ref, ours):
        outputs = flat_outputs(*module(inp))
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outputs)
        results.append(outputs + list(torch.autograd.grad(loss, [x, *module.parameters()],
                                                          retain_graph=True)))
    for g, w in zip(results[1], results[0]):
        torch.testing.assert_close(g, w, **TOL[torch.float32])


def test_large_padded_lstm_inference_under_autocast_stays_fastrnn(monkeypatch):
    # Outside autocast this inference would run torch.nn's oneDNN LSTM; under autocast
    # (not measured there) fastrnn's fused ops run, with torch.nn's result dtype.
    module = fastrnn.LSTM(6, 300)
    monkeypatch.setattr(module, "_torch_layers", None)  # calling it would raise
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = module(torch.randn(4, 2, 6))
    assert out.dtype == h.dtype == c.dtype == torch.bfloat16


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dropout_between_layers_matches_torch(cell):
    ref, ours = make_pair(cell, 4, 6, num_layers=3, dropout=0.5)
    x = pack_padded_sequence(torch.randn(7, 5, 4), torch.tensor([7, 6, 6, 3, 1]))
    torch.manual_seed(11)
    want = ref(x)[0].data
    torch.manual_seed(11)
    got = ours(x)[0].data
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    ref.eval(), ours.eval()
    torch.testing.assert_close(ours(x)[0].data, ref(x)[0].data, **TOL[torch.float32])


def test_convert_and_back():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.rnn = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
            self.blocks = nn.ModuleList([nn.GRU(12, 4), nn.RNN(4, 3, nonlinearity="relu")])
            self.head = nn.Linear(3, 2)

        def forward(self, tokens):
            out, _ = self.rnn(self.embed(tokens))
            out, _ = self.blocks[0](out)
            out, _ = self.blocks[1](out)
            return self.head(out[:, -1])

    model = Classifier().double().eval()
    tokens = torch.randint(0, 50, (3, 7))
    want = model(tokens)
    converted = fastrnn.convert(copy.deepcopy(model))
    assert type(converted.rnn) is fastrnn.LSTM and type(converted.blocks[1]) is fastrnn.RNN
    assert converted.blocks[1].nonlinearity == "relu"
    assert converted.rnn.weight_hh_l0.dtype == torch.float64 and not converted.training
    torch.testing.assert_close(converted(tokens), want, **TOL[torch.float64])
    back = fastrnn.to_torch(converted)
    assert type(back.rnn) is nn.LSTM and type(back.blocks[0]) is nn.GRU
    torch.testing.assert_close(back(tokens), want, **TOL[torch.float64])
    assert type(fastrnn.convert(nn.GRU(2, 3))) is fastrnn.GRU


def test_convert_keeps_everything_of_the_modules():
    # convert() changes the class of each module in place: nothing of the module is lost.
    torch.manual_seed(0)
    shared = nn.GRU(4, 4)
    frozen = nn.LSTM(4, 4)
    frozen.weight_ih_l0.requires_grad_(False)
    frozen.foo = "kept"
    frozen.register_buffer("scale", torch.tensor(2.0))
    tied = nn.LSTM(4, 4)
    tied.weight_hh_l0 = frozen.weight_hh_l0
    pruned = prune.l1_unstructured(nn.RNN(4, 4), "weight_hh_l0", amount=0.5)
    normed = parametrizations.weight_norm(nn.LSTM(4, 4), "weight_ih_l0")
    mixed = nn.GRU(4, 4)
    mixed.bias_ih_l0.data = mixed.bias_ih_l0.data.double()
    model = nn.ModuleList([shared, frozen, tied, pruned, normed, shared])
    calls = []
    frozen.register_forward_hook(lambda *args: calls.append("forward hook"))
    frozen.register_forward_pre_hook(lambda *args: calls.append("pre hook"))
    frozen.weight_hh_l0.register_hook(lambda grad: calls.append("param hook"))
    parameters = {name: p for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 2, 4)

    def outputs():
        return [module(x)[0] for module in model]

    want = outputs()
    sum(o.sum() for o in want).backward()
    want_grads = {name: p.grad.clone() for name, p in parameters.items() if p.grad is not None}
    optimizer.zero_grad()
    calls.clear()

    assert fastrnn.convert(model) is model
    assert [type(m) for m in model[:4]] == [fastrnn.GRU, fastrnn.LSTM, fastrnn.LSTM, fastrnn.RNN]
    assert isinstance(model[4], fastrnn.LSTM) and model[5] is model[0]
    assert type(fastrnn.convert(mixed)) is fastrnn.GRU
    assert mixed.bias_ih_l0.dtype == torch.float64
    assert dict(model.named_parameters()) == parameters
    assert frozen.foo == "kept" and frozen.scale == 2.0
    assert not frozen.weight_ih_l0.requires_grad
    assert tied.weight_hh_l0 is frozen.weight_hh_l0
    got = outputs()
    assert calls == ["pre hook", "forward hook"]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float32])
    sum(o.sum() for o in got).backward()
    assert "param hook" in calls
    assert {name for name, p in parameters.items() if p.grad is not None} == set(want_grads)
    for name, grad in want_grads.items():
        torch.testing.assert_close(parameters[name].grad, grad, **TOL[torch.float32])
    before = frozen.weight_hh_l0.detach().clone()
    optimizer.step()
    assert not torch.equal(frozen.weight_hh_l0, before)  # the optimizer's own parameters

    assert fastrnn.to_torch(model) is model
    assert [type(m) for m in model[:4]] == [nn.GRU, nn.LSTM, nn.LSTM, nn.RNN]
    assert isinstance(model[4], nn.LSTM)
    assert parametrize.is_parametrized(model[4], "weight_ih_l0")


def test_save_load_deepcopy_dtype_modes():
    ref, ours = make_pair("lstm", 4, 5, num_layers=2)
    x = torch.randn(6, 2, 4)
    want = ours(x)[0]
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is fastrnn.LSTM
    torch.testing.assert_close(loaded(x)[0], want, rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    fresh = fastrnn.LSTM(4, 5, num_layers=2)
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x)[0], want, rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(ours)(x)[0], want, rtol=0, atol=0)
    doubled = copy.deepcopy(ours).double()
    torch.testing.assert_close(doubled(x.double())[0], ref.double()(x.double())[0],
                               **TOL[torch.float64])
    bf16 = copy.deepcopy(ours).to(torch.bfloat16)
    out = bf16(x.bfloat16())[0]
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, rtol=0, atol=3e-2)
    with torch.no_grad():
        assert not ours(x)[0].requires_grad
    ours.eval()
    assert not ours.training
    assert ours(x)[0].requires_grad  # parameters require grad, input does not


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_complex_parameters_take_torch_nn_math(cell, kwargs):
    """torch.nn's modules take complex parameters (its generic cells); fastrnn hands them
    to torch.nn's forward, as its kernels are real: same outputs, states and gradients
    (relu, which has no complex clamp, raises in both)."""
    ref, ours = make_pair(cell, 4, 3, **kwargs)
    ref, ours = ref.to(torch.complex128), ours.to(torch.complex128)
    layers = 4 if kwargs else 1
    x = torch.randn(2, 5, 4, dtype=torch.complex128)
    x = x if kwargs else x.transpose(0, 1)
    h0 = torch.randn(layers, 2, 3, dtype=torch.complex128, requires_grad=True)
    hx = (h0, torch.randn_like(h0).detach()) if cell == "lstm" else h0
    results = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_()
        out, state = module(xi, hx)
        h_n = state[0] if cell == "lstm" else state
        grads = torch.autograd.grad(out.abs().sum() + h_n.abs().sum(),
                                    [xi, h0, *module.parameters()])
        results.append((out, h_n, *grads))
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, **TOL[torch.float64])
    packed = pack_padded_sequence(x, torch.tensor([3, 5]), batch_first=bool(kwargs),
                                  enforce_sorted=False)
    with torch.no_grad():
        (want, want_h), (got, got_h) = ref(packed, hx), ours(packed, hx)
    torch.testing.assert_close(got.data, want.data, **TOL[torch.float64])
    torch.testing.assert_close(got_h, want_h, **TOL[torch.float64])
    # torch's packing has no complex autograd, but the states permuted into the packed
    # rows' order (permute_batch) do: gradients through h0 and the weights.
    results = []
    for module in (ref, ours):
        out, state = module(packed, hx)
        h_n = state[0] if cell == "lstm" else state
        results.append(torch.autograd.grad(out.data.abs().sum() + h_n.abs().sum(),
                                           [h0, *module.parameters()]))
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
def test_complex_relu_zoneout_or_weight_drop_raise():
    for module in make_pair("rnn_relu", 4, 3):
        with pytest.raises(NotImplementedError, match="clamp is not supported for complex"):
            module.to(torch.complex64)(torch.randn(5, 2, 4, dtype=torch.complex64))
    modules = [fastrnn.GRU(4, 3, zoneout=0.1), fastrnn.LSTM(4, 3, weight_drop=0.2),
               fastrnn.LayerNormLSTM(4, 3)]
    for module in modules:
        with pytest.raises(RuntimeError, match="needs real parameters, got torch.complex64"):
            module.to(torch.complex64)(torch.randn(5, 2, 4, dtype=torch.complex64))

    class Subclass(fastrnn.GRU):
        pass

    ref, ours = nn.GRU(4, 3).to(torch.complex64), Subclass(4, 3).to(torch.complex64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 4, dtype=torch.complex64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL[torch.float32])


def test_gradcheck_through_module():
    module = fastrnn.GRU(3, 2, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    packed_lengths = torch.tensor([4, 2, 1])

    def fn(x, h0):
        out, h = module(pack_padded_sequence(x, packed_lengths), h0)
        return out.data, h

    assert torch.autograd.gradcheck(fn, (x, h0))


def test_torch_compile_fullgraph_padded_and_packed():
    class Model(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            out, (h, c) = self.rnn(x)
            return self.head(out.mean(1)) + h.sum(0).sum(-1, keepdim=True)

    torch.manual_seed(0)
    eager = Model(fastrnn.LSTM(5, 4, batch_first=True, bidirectional=True))
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(compiled(x), eager(x), **TOL[torch.float32])
    compiled(x).sum().backward()
    eager(x).sum().backward()
    for a, b in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **TOL[torch.float32])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_compile_fullgraph_packed(cell):
    # torch.nn's modules cannot (a graph break on batch_sizes[0]); fastrnn's can.
    torch._dynamo.reset()
    kwargs = dict(proj_size=2) if cell == "lstm" else {}
    _, eager = make_pair(cell, 5, 4, num_layers=2, bidirectional=True, **kwargs)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend="aot_eager")
    for lengths in ([6, 4, 1], [2, 7, 3, 5]):
        x = torch.randn(max(lengths), len(lengths), 5)
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        h0 = torch.randn(4, len(lengths), 2 if cell == "lstm" else 4)
        hx = (h0, torch.randn(4, len(lengths), 4)) if cell == "lstm" else h0
        results = []
        for module in (eager, compiled):
            out, hidden = module(packed, hx)
            loss = out.data.sum() + sum(h.sum() for h in flat_outputs(out, hidden)[1:])
            results.append([out.data, *torch.autograd.grad(loss, list(module.parameters()))])
        for got, want in zip(results[1], results[0]):
            torch.testing.assert_close(got, want, **TOL[torch.float32])


def _second_order(module, packed, x, h0):
    # A gradient penalty: the gradients of the gradients of every input and parameter.
    inp = pack_padded_sequence(x, torch.tensor([2, 5, 4]), enforce_sorted=False) if packed else x
    out, hidden = module(inp, h0)
    out = out.data if isinstance(out, PackedSequence) else out
    h_n = hidden[0] if isinstance(hidden, tuple) else hidden
    leaves = [x, *(h0 if isinstance(h0, tuple) else (h0,)), *module.parameters()]
    first = torch.autograd.grad((out ** 2).sum() + h_n.sin().sum(), leaves, create_graph=True)
    second = torch.autograd.grad(sum((g ** 2).sum() for g in first), leaves)
    return first, second


@pytest.mark.parametrize("cell", list(PAIRS))
@pytest.mark.parametrize("layout", ["padded", "unsorted"])
def test_double_backward_matches_torch(cell, layout):
    # Was an error (and before that silently zero); torch.nn differentiates its CPU
    # gradients, so fastrnn recomputes the layer in plain ops when create_graph=True.
    torch.manual_seed(0)
    ref, ours = make_pair(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    if cell == "lstm":
        h0 = (h0, torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True))
    packed = layout == "unsorted"
    want, got = _second_order(ref, packed, x, h0), _second_order(ours, packed, x, h0)
    for w, g in zip(want[0] + want[1], got[0] + got[1]):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("proj_size", [0, 3])
def test_double_backward_when_only_the_state_and_weight_hh_need_grad(proj_size):
    # input_proj needs no gradient here (frozen input side), h0 and weight_hh do.
    ref, ours = make_pair("lstm", 4, 6, proj_size=proj_size, bidirectional=True,
                          dtype=torch.float64)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    results = []
    for module in (ref, ours):
        module.requires_grad_(False)
        module.weight_hh_l0.requires_grad_(True)
        h0 = torch.randn(2, 2, proj_size or 6, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1)).requires_grad_()
        c0 = torch.zeros(2, 2, 6, dtype=torch.float64)
        out, _ = module(pack_padded_sequence(x, torch.tensor([5, 3])), (h0, c0))
        leaves = [h0, module.weight_hh_l0]
        first = torch.autograd.grad(out.data.pow(2).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(sum(g.pow(2).sum() for g in first), leaves)
        results.append(list(first) + list(second))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_gradgradcheck_through_module():
    module = fastrnn.LSTM(2, 3, bidirectional=True, dtype=torch.float64)
    names = [name for name, _ in module.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)

    def fn(x, *params):
        packed = pack_padded_sequence(x, torch.tensor([4, 3]))
        out, (h, c) = torch.func.functional_call(module, dict(zip(names, params)), (packed,))
        return out.data, h, c

    assert torch.autograd.gradgradcheck(fn, (x, *module.parameters()))


@pytest.mark.parametrize("cell", list(PAIRS))
def test_torch_func_transforms_and_forward_ad_match_torch(cell):
    # They used to raise (torch.library's Python autograd does not support them); the
    # layer now runs in plain ops under them, as torch.nn's CPU modules do.
    from torch.func import functional_call, grad, jacrev, jvp
    import torch.autograd.forward_ad as fwad
    torch.manual_seed(0)
    ref, ours = make_pair(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x, t = torch.randn(2, 6, 5, 3, dtype=torch.float64).unbind(0)

    def loss(module):
        return lambda params, x: functional_call(module, params, (x,))[0].pow(2).sum()

    want = grad(loss(ref))(dict(ref.named_parameters()), x)
    got = grad(loss(ours))(dict(ours.named_parameters()), x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], **TOL[torch.float64])
    torch.testing.assert_close(jacrev(lambda x: ours(x)[0])(x), jacrev(lambda x: ref(x)[0])(x),
                               **TOL[torch.float64])
    torch.testing.assert_close(jvp(lambda x: ours(x)[0], (x,), (t,))[1],
                               jvp(lambda x: ref(x)[0], (x,), (t,))[1], **TOL[torch.float64])
    with fwad.dual_level():
        tangents = [fwad.unpack_dual(m(fwad.make_dual(x, t))[0]).tangent for m in (ref, ours)]
    torch.testing.assert_close(tangents[1], tangents[0], **TOL[torch.float64])
    # A packed batch in unsorted order: its states are permuted back (permute_hidden).
    lengths = torch.tensor([2, 6, 4, 5, 1])
    packed, tangent = (pack_padded_sequence(v, lengths, enforce_sorted=False) for v in (x, t))
    with fwad.dual_level():
        # (pack_padded_sequence itself has no forward AD formula)
        dual = packed._replace(data=fwad.make_dual(packed.data, tangent.data))
        results = [m(dual) for m in (ref, ours)]
        tangents = [[fwad.unpack_dual(r).tangent for r in
                     (out.data, *(state if isinstance(state, tuple) else (state,)))]
                    for out, state in results]
    for got, want in zip(*reversed(tangents)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_double_backward_of_a_direct_op_call_is_a_clear_error():
    # The op alone does not keep input_proj; only input_projection's result can be recomputed.
    # First-order gradients with create_graph=True still work.
    weight_hh = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    proj = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    out, _ = fastrnn.rnn_tanh(proj, torch.tensor([2, 2, 2]), weight_hh, None, h0)
    (grad,) = torch.autograd.grad(out.sum(), weight_hh, create_graph=True)
    (plain,) = torch.autograd.grad(
        fastrnn.rnn_tanh(proj, torch.tensor([2, 2, 2]), weight_hh, None, h0)[0].sum(), weight_hh)
    torch.testing.assert_close(grad, plain, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="fastrnn: double backward .*recompute="):
        torch.autograd.grad(grad.sum(), weight_hh)

    data = torch.randn(6, 3, dtype=torch.float64)
    weight_ih = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    projection = (data, weight_ih, None)
    out, _ = fastrnn.rnn_tanh(fastrnn.input_projection(*projection), torch.tensor([2, 2, 2]),
                              weight_hh, None, h0,
                              recompute=fastrnn.ops.Recompute(fastrnn.input_projection, projection))
    (grad,) = torch.autograd.grad(out.sum(), weight_hh, create_graph=True)
    assert torch.autograd.grad(grad.sum(), weight_ih)[0].abs().sum() > 0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_result_dtype_and_values_match_torch(cell, packed, dtype):
    # torch.nn under CPU autocast: LSTM on padded input and RNN compute in (and return)
    # the autocast dtype, GRU and LSTM on packed input float32; fastrnn does the same.
    ref, ours = make_pair(cell, 8, 16, num_layers=2, bidirectional=True)
    x = torch.randn(6, 3, 8, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])

    def run(module):
        data = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        with torch.autocast("cpu", dtype=dtype):
            out, hidden = module(data)
        h = hidden[0] if cell == "lstm" else hidden
        return (out.data if packed else out), h

    try:
        want, want_h = run(ref)
    except RuntimeError as error:
        # torch.nn's oneDNN LSTM has no 16-bit training kernel where the CPU lacks the
        # instructions (float16 on any; bfloat16 without AVX-512 BF16): "could not create
        # a primitive descriptor". Compare with its inference instead.
        if "could not create a primitive descriptor" not in str(error):
            raise
        try:
            with torch.no_grad():
                want, want_h = run(ref)
        except RuntimeError:
            # Nor any 16-bit LSTM kernel (bfloat16 on a CPU without AVX-512): torch.nn
            # cannot run this at all. Its dtype rule (LSTM on padded input computes in the
            # autocast dtype) and its float32 values stand in for it.
            with torch.autocast("cpu", enabled=False):
                want, hidden = ref(x)
            want, want_h = want.detach().to(dtype), hidden[0].detach().to(dtype)
    got, got_h = run(ours)
    assert (got.dtype, got_h.dtype) == (want.dtype, want_h.dtype)
    # Both round to the autocast dtype in different places (torch.nn: every matmul).
    tol = dict(rtol=0, atol=3e-2 if dtype == torch.bfloat16 else 5e-3)
    torch.testing.assert_close(got.float(), want.float(), **tol)
    torch.testing.assert_close(got_h.float(), want_h.float(), **tol)
    got.float().sum().backward()
    assert x.grad.dtype == torch.float32 and ours.weight_hh_l1.grad.dtype == torch.float32


def test_autocast_leaves_float64_modules_alone():
    module = fastrnn.LSTM(3, 4).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = module(torch.randn(5, 2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN])
def test_torchscript_scripts_torch_nn_twin_sharing_parameters(cls):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(3, 4, num_layers=2, bidirectional=True)

        def forward(self, x):
            return self.rnn(x)[0]

    model = Model()
    scripted = torch.jit.script(model)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(scripted(x), model(x))
    with torch.no_grad():
        model.rnn.weight_hh_l1_reverse.mul_(2)  # the scripted twin holds the same tensors
    torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN])
def test_torchscript_of_a_user_subclass_is_a_clear_error(cls):
    class Mine(cls):
        def forward(self, x, hx=None):
            return super().forward(x, hx)[0] * 2

    module = Mine(3, 4)
    assert module(torch.randn(5, 2, 3)).shape == (5, 2, 4)
    assert repr(module) == "Mine(3, 4)"  # as torch.nn names a subclass
    with pytest.raises(RuntimeError, match=f"torch.jit.script of .*Mine, a subclass of "
                                           f"fastrnn.{cls.__name__}, is not supported"):
        torch.jit.script(module)


def _bad_packed_inputs():
    lengths = [5, 3]
    f64 = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 4, dtype=torch.float64), lengths)
    return {
        "float64 data into a float32 module": f64,
        "float batch_sizes": PackedSequence(torch.randn(8, 4), torch.tensor([2., 2, 2, 1, 1])),
        "an empty PackedSequence": PackedSequence(torch.randn(0, 4),
                                                 torch.zeros(0, dtype=torch.int64)),
    }


@pytest.mark.parametrize("case", list(_bad_packed_inputs()))
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("hx_given", [False, True])
def test_bad_packed_input_raises_torch_nn_exception_type(case, mode, hx_given):
    """`except RuntimeError` (or TypeError, IndexError) written for torch.nn catches fastrnn's."""
    torch.manual_seed(0)
    theirs = getattr(nn, mode)(4, 3)
    ours = getattr(fastrnn, mode)(4, 3)
    ours.load_state_dict(theirs.state_dict())
    hx = None
    if hx_given:
        hx = torch.zeros(1, 2, 3)
        hx = (hx, hx.clone()) if mode == "LSTM" else hx
    packed = _bad_packed_inputs()[case]
    outcomes = []
    for module in (theirs, ours):
        try:
            module(packed, hx)
            outcomes.append(None)
        except Exception as error:  # noqa: BLE001 - the type is what is compared
            outcomes.append(type(error))
    assert outcomes[1] is outcomes[0] or (outcomes[0] is not None
                                          and issubclass(outcomes[1], outcomes[0])), outcomes


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_one_step_rnn_runs_torch_nn_own_computation(nonlinearity, batch_first, monkeypatch):
    """A padded one-step call of fastrnn.RNN (the decoder pattern) runs torch.nn's RNN, which
    costs less there: torch.nn's bits, forward and backward; two steps run fastrnn's ops."""
    torch.manual_seed(0)
    ref = nn.RNN(5, 7, num_layers=2, nonlinearity=nonlinearity, batch_first=batch_first)
    ours = fastrnn.RNN(5, 7, num_layers=2, nonlinearity=nonlinearity, batch_first=batch_first)
    ours.load_state_dict(ref.state_dict())
    hx = torch.randn(2, 3, 7)
    x = torch.randn(3, 1, 5) if batch_first else torch.randn(1, 3, 5)
    results = []
    for module in (ref, ours):
        xx = x.clone().requires_grad_()
        out, h = module(xx, hx)
        grads = torch.autograd.grad((out * 1.5).sum() + h.sum(), [xx, *module.parameters()])
        results.append([out, h, *grads])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    monkeypatch.setattr(ours, "_torch_layers", None)  # calling it would raise
    ours(torch.randn(3, 2, 5) if batch_first else torch.randn(2, 3, 5), hx)
    assert not ours._torch_is_faster(x.double(), None, hx.double())
    with_zoneout = fastrnn.RNN(5, 7, zoneout=0.1)
    assert not with_zoneout._torch_is_faster(torch.randn(1, 3, 5), None, torch.randn(1, 3, 7))
