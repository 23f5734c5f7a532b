"""Determinism (bitwise repeatable runs) and thread safety of the modules on the CPU."""
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

MODULES = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn_tanh": fastrnn.RNN}


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def forward_backward(module, seed, batch=16, steps=12, grad=True):
    """Output, final state and (with grad) the gradients of the input and every parameter."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    lengths[0] = steps
    x = torch.randn(steps, batch, module.input_size, generator=gen, requires_grad=grad)
    out, hidden = module(pack_padded_sequence(x, lengths, enforce_sorted=False))
    h_n = hidden[0] if isinstance(hidden, tuple) else hidden
    results = [out.data.detach(), h_n.detach()]
    if grad:
        w = torch.randn(out.data.shape, generator=gen)
        loss = (out.data * w).sum() + h_n.sum()
        results += list(torch.autograd.grad(loss, [x] + list(module.parameters())))
    return results


def assert_bitwise(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y), float((x - y).abs().max())


@pytest.mark.parametrize("cell", list(MODULES))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hidden,batch", [(32, 16), (96, 48)], ids=["agnews", "parallel-steps"])
def test_repeated_runs_are_bitwise_identical(cell, threads, hidden, batch, restore_threads):
    # (96, 48): 48 rows * 4*96*96 multiply-adds per LSTM step, above the threshold
    # where a step's rows are split across threads.
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = MODULES[cell](24, hidden, num_layers=2, bidirectional=True)
    first = forward_backward(module, seed=1, batch=batch)
    for _ in range(2):
        assert_bitwise(forward_backward(module, seed=1, batch=batch), first)


@pytest.mark.parametrize("cell", list(MODULES))
def test_forward_same_bits_for_1_and_2_threads(cell, restore_threads):
    # The per-step kernels compute each row the same way whatever the split; the
    # weight gradients (one large ATen GEMM over all tokens) may not: see README.
    torch.manual_seed(0)
    module = MODULES[cell](24, 96, num_layers=2, bidirectional=True)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            results.append(forward_backward(module, seed=2, batch=48, grad=False))
    assert_bitwise(results[0], results[1])


def run_threads(jobs):
    """Runs the callables in parallel Python threads and returns their results in order."""
    results = [None] * len(jobs)
    errors = []
    barrier = threading.Barrier(len(jobs))

    def worker(i):
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    return results


def test_threads_training_separate_modules():
    cells = ["lstm", "gru", "rnn_tanh", "lstm", "gru", "rnn_tanh"]

    def make(i):
        torch.manual_seed(100 + i)
        return MODULES[cells[i]](16, 20 + i, num_layers=2, bidirectional=i % 2 == 0)

    modules = [make(i) for i in range(len(cells))]

    def job(i):
        return lambda: [forward_backward(modules[i], seed=i, batch=9) for _ in range(3)]

    sequential = [job(i)() for i in range(len(cells))]
    parallel = run_threads([job(i) for i in range(len(cells))])
    for seq, par in zip(sequential, parallel):
        for a, b in zip(seq, par):
            assert_bitwise(a, b)


def test_threads_inference_shared_module():
    torch.manual_seed(7)
    module = fastrnn.LSTM(16, 40, num_layers=2, bidirectional=True).eval()

    def job(i):
        def run():
            with torch.no_grad():
                return [forward_backward(module, seed=i, batch=5 + i, grad=False)
                        for _ in range(3)]
        return run

    sequential = [job(i)() for i in range(6)]
    parallel = run_threads([job(i) for i in range(6)])
    for seq, par in zip(sequential, parallel):
        for a, b in zip(seq, par):
            assert_bitwise(a, b)
