"""The CUDA kernels against torch.nn (cuDNN on and off) and gradcheck; skipped without a GPU."""
import pytest
import torch

import fastrnn
from fastrnn.ops import CELLS
from test_ops import compare_with_torch, op_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
ALL_CELLS = list(CELLS)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("layout", ["padded", "unsorted"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cudnn", [True, False])
def test_cuda_matches_torch_nn(cell, layout, dtype, cudnn):
    with torch.backends.cudnn.flags(enabled=cudnn):
        compare_with_torch(cell, dtype, layout, bias=True, hidden=17, batch=7, device="cuda")


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_gradcheck(cell, reverse):
    args = op_args(cell, device="cuda")
    fn = getattr(fastrnn, cell)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, reverse), args)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_reduced_precision(cell, dtype):
    args = op_args(cell, dtype=torch.float32, requires_grad=False, device="cuda")
    low = [a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
           for a in args]
    want = getattr(fastrnn, cell)(*[a.float() if isinstance(a, torch.Tensor) and
                                    a.is_floating_point() else a for a in low])
    got = getattr(fastrnn, cell)(*low)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), w, rtol=1e-2, atol=1e-2)


def test_cuda_module_matches_cpu():
    torch.manual_seed(0)
    cpu = fastrnn.LSTM(8, 16, num_layers=2, bidirectional=True)
    gpu = fastrnn.LSTM(8, 16, num_layers=2, bidirectional=True).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(9, 4, 8)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([9, 3, 5, 1]),
                                                     enforce_sorted=False)
    want = cpu(packed)[0].data
    got = gpu(packed.to("cuda"))[0].data
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)
