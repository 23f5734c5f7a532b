"""PyTorch's own module test inputs (torch.testing._internal.common_modules.module_db) for
torch.nn.RNN/GRU/LSTM, run against fastrnn's modules: outputs equal to torch.nn's, the
reference functions, gradcheck and gradgradcheck, non-contiguous inputs, error inputs."""
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

pytest.importorskip("expecttest")  # torch.testing._internal needs it (README: test deps)
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db  # noqa: E402
from torch.utils._pytree import tree_flatten, tree_map  # noqa: E402

import fastrnn  # noqa: E402
from helpers import TOL  # noqa: E402

OURS = {torch.nn.RNN: fastrnn.RNN, torch.nn.GRU: fastrnn.GRU, torch.nn.LSTM: fastrnn.LSTM}
INFOS = [info for info in module_db if info.module_cls in OURS]


def _inputs(info, dtype, requires_grad):
    kwargs = dict(device="cpu", dtype=dtype, requires_grad=requires_grad, training=True)
    samples = info.module_inputs_func(info, **kwargs)
    if info.module_cls is not torch.nn.LSTM:
        samples += info.module_inputs_func(info, with_packed_sequence=True, **kwargs)[2::2]
    return samples


def _pair(info, sample, dtype):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    ref = info.module_cls(*args, **kwargs).to(dtype)
    ours = OURS[info.module_cls](*args, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _tensors(output):
    flat, _ = tree_flatten(output, is_leaf=lambda x: isinstance(x, PackedSequence))
    return [x.data if isinstance(x, PackedSequence) else x for x in flat]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_forward_and_reference(info, dtype):
    for sample in _inputs(info, dtype, requires_grad=False):
        ref, ours = _pair(info, sample, dtype)
        args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
        got = _tensors(ours(*args, **kwargs))
        for g, w in zip(got, _tensors(ref(*args, **kwargs)), strict=True):
            torch.testing.assert_close(g, w, **TOL[dtype])
        if sample.reference_fn is not None and not isinstance(args[0], PackedSequence):
            for g, w in zip(got, _tensors(sample.reference_fn(ours, *args, **kwargs))):
                torch.testing.assert_close(g, w, **TOL[dtype])


def _as_function(module, args, kwargs):
    """(function of flat tensors, flat tensors): the inputs and the parameters."""
    flat_args, spec = tree_flatten((args, kwargs), is_leaf=lambda x: isinstance(x, PackedSequence))
    packed = [a for a in flat_args if isinstance(a, PackedSequence)]
    tensors = [a.data if isinstance(a, PackedSequence) else a for a in flat_args]
    tensors = [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]
    params = dict(module.named_parameters())

    def fn(*flat):
        inputs, weights = flat[:len(tensors)], flat[len(tensors):]
        swap = dict(zip(map(id, tensors), inputs))

        def rebuild(a):
            if isinstance(a, PackedSequence):
                return a._replace(data=swap.get(id(a.data), a.data))
            return swap.get(id(a), a)

        call_args, call_kwargs = tree_map(rebuild, (args, kwargs),
                                          is_leaf=lambda x: isinstance(x, PackedSequence))
        out = torch.func.functional_call(module, dict(zip(params, weights)),
                                         call_args, call_kwargs)
        return tuple(_tensors(out))

    assert not packed or all(p.data.requires_grad for p in packed)
    return fn, (*tensors, *params.values())


@pytest.mark.parametrize("check", ["gradcheck", "gradgradcheck"])
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_gradients(info, check):
    # A spread of the samples (gradgradcheck over every one takes minutes on 2 cores).
    samples = _inputs(info, torch.float64, requires_grad=True)
    for sample in samples[::3] if check == "gradcheck" else samples[1::7]:
        _, ours = _pair(info, sample, torch.float64)
        fn, flat = _as_function(ours, sample.forward_input.args, sample.forward_input.kwargs)
        assert getattr(torch.autograd, check)(fn, flat, fast_mode=check == "gradgradcheck")


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_non_contiguous_inputs(info):
    def strided(t):
        # The same values, every other element of a buffer twice as long.
        if not isinstance(t, torch.Tensor):
            return t
        wide = torch.stack([t.detach(), torch.full_like(t, float("nan"))], dim=-1)
        return wide[..., 0].requires_grad_(t.requires_grad)

    for sample in _inputs(info, torch.float64, requires_grad=True):
        if any(isinstance(a, PackedSequence) for a in sample.forward_input.args):
            continue
        ref, ours = _pair(info, sample, torch.float64)
        args = tree_map(strided, sample.forward_input.args)
        assert all(a.is_contiguous() is False for a in tree_flatten(args)[0] if a.numel() > 1)
        for g, w in zip(_tensors(ours(*args)), _tensors(ref(*sample.forward_input.args))):
            torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_error_inputs(info):
    cls = OURS[info.module_cls]
    for error in info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                               requires_grad=False, training=True):
        sample = error.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        with pytest.raises(error.error_type, match=error.error_regex):
            module = cls(*args, **kwargs)
            assert error.error_on == ModuleErrorEnum.FORWARD_ERROR
            module(*sample.forward_input.args, **sample.forward_input.kwargs)
