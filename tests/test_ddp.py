"""DistributedDataParallel (gloo, 2 CPU processes) over a fastrnn model."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = fastrnn.LSTM(6, 5, num_layers=2, bidirectional=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x, lengths):
        _, (h, _) = self.rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return self.head(torch.cat([h[-2], h[-1]], dim=1))


def batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 8, 6, generator=gen)
    lengths = torch.randint(1, 8, (8,), generator=gen)
    target = torch.randint(0, 3, (8,), generator=gen)
    return x, lengths, target


def loss_fn(model, x, lengths, target):
    return nn.functional.cross_entropy(model(x, lengths), target)


def worker(rank, world, port, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(Classifier())
    x, lengths, target = batch()
    half = slice(rank * 4, rank * 4 + 4)
    loss_fn(model, x[:, half], lengths[half], target[half]).backward()
    if rank == 0:
        torch.save([p.grad for p in model.module.parameters()], out_path)
    dist.barrier()
    dist.destroy_process_group()
    # A child sometimes aborted in interpreter finalization ("terminate called without an
    # active exception": gloo's threads at exit, a known torch/gloo issue, e.g.
    # pytorch/pytorch#190489), twice in 8 CI runs. Its work is done and saved: skip it.
    os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_single_process(tmp_path):
    out_path = str(tmp_path / "grads.pt")
    mp.spawn(worker, args=(2, free_port(), out_path), nprocs=2, join=True)
    ddp_grads = torch.load(out_path)

    torch.manual_seed(0)
    model = Classifier()
    loss_fn(model, *batch()).backward()
    for got, want in zip(ddp_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
