"""Instructions per module-level step (valgrind's callgrind), fastrnn.X against torch.nn.X:

    python benchmarks/count_instructions.py [--cells lstm gru rnn_tanh] [--json out.json]

The step is bench_module_cpu.py's (its ``step_fn``), on one AG News batch (batch 16, embedding 64, hidden 32,
float32, 1 thread): the user's ``pack_padded_sequence(..., enforce_sorted=False)``, the module
and, in training, a loss on ``out.data`` and ``h_n`` with its backward. The user's packing is
also counted alone (forward, and forward with the backward of ``data``), so that each side's
remainder (the recurrent layer, the loss, the autograd engine) can be compared without it.

Instruction counts are what a shared machine cannot blur: timings here move by 10-50% with the
other tenants' load, the counts by well under 1% (``torch.utils.benchmark``'s
``collect_callgrind``, denoised). They are not time: most of fastrnn's instructions are the
vector loads and multiply-adds of GEMMs, most of torch.nn's the dispatch of its per-step ops,
and the two need not take the same time per instruction, so the time ratios of
bench_module_cpu.py stay the measure of speed. Needs ``valgrind`` on PATH. Each count runs in a process of its own under
callgrind (1-4 min here); the three cells take ~45 min.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import torch.utils.benchmark as benchmark

sys.path.insert(0, os.path.dirname(__file__))
from bench_cpu import machine  # noqa: E402

CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN"}

SETUP = """
import sys, torch, fastrnn
sys.path.insert(0, {bench_dir!r})
from torch.nn.utils.rnn import pack_padded_sequence
from bench_module_cpu import make_batches, step_fn, SHAPES
torch.set_num_threads(1)
batches = make_batches(SHAPES["agnews"], 1, 0)
x, lengths = batches[0]
torch.manual_seed(0)
ref = torch.nn.{cls}(64, 32, batch_first=True)
ours = fastrnn.{cls}(64, 32, batch_first=True)
ours.load_state_dict(ref.state_dict())
module = {{"torch.nn": ref, "fastrnn": ours, None: None}}[{side!r}]
grad = torch.ones(int(lengths.sum()), 64)

def pack():
    return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)

if module is not None:
    step = step_fn(module, batches, "packed", train=True)
    step_infer = step_fn(module, batches, "packed", train=False)

def pack_train():
    torch.autograd.backward(pack().data, grad)

def pack_infer():
    with torch.no_grad():
        pack()

for _ in range(3):
    {stmt}
"""


def count(cls, side, stmt, number):
    """Instructions per call of ``stmt`` (one of SETUP's functions), denoised."""
    setup = SETUP.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), cls=cls,
                         side=side, stmt=stmt)
    timer = benchmark.Timer(stmt=stmt, setup=setup, num_threads=1)
    stats = timer.collect_callgrind(number=number, collect_baseline=False)
    return stats.counts(denoise=True) / number


def run(cells, number):
    rows = []
    for cell in cells:
        cls = CLASSES[cell]
        for pass_, step, pack in (("train", "step()", "pack_train()"),
                                  ("infer", "step_infer()", "pack_infer()")):
            pack_count = count(cls, None, pack, number)
            ref = count(cls, "torch.nn", step, number)
            ours = count(cls, "fastrnn", step, number)
            row = dict(cell=cell, pass_=pass_, torch=ref, fastrnn=ours, pack=pack_count,
                       ratio=ref / ours, ratio_without_pack=(ref - pack_count) / (ours - pack_count),
                       pack_share_of_fastrnn=pack_count / ours)
            rows.append(row)
            print(instruction_row(row), flush=True)
    return rows


INSTRUCTION_HEADER = ("| cell | pass | torch.nn | fastrnn | torch.nn / fastrnn | user's pack "
                      "| pack's share of fastrnn | torch.nn / fastrnn without the pack |\n"
                      "|---|---" + "|---:" * 6 + "|")


def instruction_row(row):
    return (f"| {row['cell']} | {row['pass_']} | {row['torch'] / 1e6:.2f} M "
            f"| {row['fastrnn'] / 1e6:.2f} M | {row['ratio']:.2f}x | {row['pack'] / 1e6:.2f} M "
            f"| {row['pack_share_of_fastrnn']:.0%} | {row['ratio_without_pack']:.2f}x |")


def fastrnn_commit():
    """The checkout's commit (with "+changes" when the tree differs from it), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty.strip() else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    parser.add_argument("--number", type=int, default=5, help="steps counted per measurement")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in each count's setup, so that machine() says so
    info = machine()
    info["fastrnn_commit"] = fastrnn_commit()
    print("instructions per step (one AG News batch, 1 thread, callgrind, denoised)")
    print(INSTRUCTION_HEADER)
    rows = run(args.cells, args.number)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
