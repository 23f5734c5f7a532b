"""The torch internals fastrnn relies on (fastrnn/_compat.py and the few uses named here)
still exist in the installed torch, and what they buy still holds: a torch upgrade that
moves one fails here, by name."""
import importlib

import pytest
import torch
from torch import nn

import fastrnn

PRIVATE_NAMES = [
    ("torch._dynamo.variables.builder", "VariableBuilder.wrap_module"),  # _compat
    ("torch._dynamo.config", "allow_rnn"),  # _compat
    ("torch._C", "_are_functorch_transforms_active"),  # _compat.functorch_transform_active
    ("torch._C", "_AutoDispatchBelowAutograd"),  # _compat.below_autograd
    ("torch._C", "_is_any_autocast_enabled"),  # _compat: torch_lstm_is_faster, autocast_enabled_*
    ("torch", "_VF.lstm"),  # _compat.torch_lstm
    ("torch.nn", "RNNBase._update_flat_weights"),  # the modules (their own base class's)
    ("torch.nn", "LSTM.check_forward_args"),
    ("torch.nn", "LSTM.permute_hidden"),
]


def test_rnnbase_keeps_its_flat_weights_attributes():
    module = nn.LSTM(2, 3)
    assert [w is getattr(module, n) for n, w in
            zip(module._flat_weights_names, module._flat_weights)] == [True] * 4


@pytest.mark.parametrize("module, name", PRIVATE_NAMES)
def test_private_torch_names_exist(module, name):
    target = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)


def test_forward_ad_level_is_readable():
    # functional._plain_ops_needed reads it with a default; inside a dual level it is >= 0.
    import torch.autograd.forward_ad as forward_ad

    with forward_ad.dual_level():
        assert getattr(forward_ad, "_current_level", -1) >= 0


@pytest.mark.parametrize("cls, theirs", [(fastrnn.LSTM, nn.LSTM), (fastrnn.GRU, nn.GRU),
                                         (fastrnn.RNN, nn.RNN)])
def test_modules_are_torch_nn_instances_and_say_they_are_fastrnn(cls, theirs):
    module = cls(3, 4)
    assert isinstance(module, theirs) and isinstance(module, nn.RNNBase)
    assert repr(module) == f"fastrnn.{theirs(3, 4)!r}"
    converted = fastrnn.convert(nn.Sequential(theirs(3, 4)))
    assert [type(m) for m in converted] == [cls] and isinstance(converted[0], theirs)


def test_compile_traces_a_model_holding_fastrnn_modules_without_graph_break():
    # Dynamo refuses torch.nn's RNN classes; fastrnn's subclass them, so _compat tells Dynamo
    # they are plain modules. fullgraph=True fails on any graph break.
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = fastrnn.LSTM(5, 6, batch_first=True)
            self.gru = fastrnn.GRU(6, 4)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.gru(out)[0].sum()

    torch._dynamo.reset()
    model = Model()
    x = torch.randn(2, 3, 5)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=0)


def test_compile_still_refuses_torch_nn_lstm():
    # Only fastrnn's modules are let through: torch.nn's own keep Dynamo's behaviour.
    torch._dynamo.reset()
    compiled = torch.compile(nn.LSTM(3, 4), fullgraph=True, backend="eager")
    with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
        compiled(torch.randn(2, 1, 3))
