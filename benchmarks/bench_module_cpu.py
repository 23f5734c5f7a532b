"""Module level on the CPU: a user's step with fastrnn.X vs torch.nn.X, interleaved, in one run.

    python benchmarks/bench_module_cpu.py [--threads 2] [--rounds 30] [--repeats 1] [--json out.json]

A step is what the AG News classifier does with its recurrent layer (fastrnn/agnews/models.py):
``pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)`` of the
embedding output ``x`` (a leaf that requires grad, as the embedding's output does), the
module, and a loss on ``out.data`` and ``h_n`` with its backward (training), or the same
forward under ``torch.no_grad()`` (inference). Shape: batch 16, embedding 64, hidden 32,
float32, lengths drawn from real AG News rows; each timed call runs the same 4 batches.
Cases: 1-layer LSTM, GRU, RNN (tanh) and a 2-layer bidirectional LSTM against torch.nn on
the same packed batch, and the 1-layer LSTM against torch.nn on the padded batch (oneDNN;
its loss reads out and h_n of the padded run). ``--shape large`` (batch 64, input 512,
hidden 512) runs the 1-layer LSTM training step packed and padded. ``--pack fastrnn`` packs
fastrnn's side with ``fastrnn.pack_padded_sequence`` instead (torch.nn's side keeps torch's):
what a user who also swaps the packing gets; issue 14's targets are for torch's packing, so
those rows carry none.

Timing: torch.utils.benchmark.Timer.timeit blocks of each case (~25 ms each) alternate
round by round, fastrnn and torch.nn next to each other, so load changes on the shared
machine hit both; reported are the median block time of each side and the median over
rounds of the per-round ratio torch / fastrnn. ``--repeats R`` runs every case R times in turn
(rounds / R rounds each time), so that minute-long load changes of the shared machine spread
over all cases; the report adds the lowest and highest ratio of the R runs.
"""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.utils.benchmark as benchmark
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, os.path.dirname(__file__))
import fastrnn  # noqa: E402
from agnews_lengths import length_population, sample_lengths  # noqa: E402
from bench_cpu import machine  # noqa: E402
from tables import MODULE_STEP_HEADER, module_step_row  # noqa: E402

SHAPES = {"agnews": dict(batch=16, input_size=64, hidden_size=32),
          "large": dict(batch=64, input_size=512, hidden_size=512)}
# case -> (torch class, constructor kwargs, torch side's layout)
CASES = {
    "lstm": (torch.nn.LSTM, {}, "packed"),
    "gru": (torch.nn.GRU, {}, "packed"),
    "rnn_tanh": (torch.nn.RNN, {}, "packed"),
    "bilstm2": (torch.nn.LSTM, dict(num_layers=2, bidirectional=True), "packed"),
    "lstm_vs_padded": (torch.nn.LSTM, {}, "padded"),
}
# The issue #14 targets: (case, pass) -> minimum speed-up.
TARGETS = {
    ("lstm", "train"): 9.0, ("gru", "train"): 9.0, ("rnn_tanh", "train"): 6.0,
    ("bilstm2", "train"): 13.0, ("lstm_vs_padded", "train"): 1.5,
    ("lstm", "infer"): 5.0, ("gru", "infer"): 5.0, ("rnn_tanh", "infer"): 5.0,
}
LARGE_TARGETS = {("lstm", "train"): 2.5, ("lstm_vs_padded", "train"): 1.7}
# --pack: the pack_padded_sequence of fastrnn's side.
PACKS = {"torch": pack_padded_sequence, "fastrnn": fastrnn.pack_padded_sequence}


def make_batches(cfg, count, seed):
    population, _ = length_population()
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = sample_lengths(cfg["batch"], population, gen)
        x = torch.randn(cfg["batch"], int(lengths.max()), cfg["input_size"], generator=gen)
        batches.append((x.requires_grad_(), lengths))
    return batches


def step_fn(module, batches, layout, train, pack=pack_padded_sequence):
    """One call: the step on each batch (packed: the user's ``pack`` included)."""
    def one(x, lengths):
        if layout == "packed":
            out, state = module(pack(x, lengths, batch_first=True, enforce_sorted=False))
            out = out.data
        else:
            out, state = module(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return out, h_n

    if train:
        def run():
            for x, lengths in batches:
                out, h_n = one(x, lengths)
                (out.mean() + h_n.mean()).backward()
    else:
        def run():
            with torch.no_grad():
                for x, lengths in batches:
                    one(x, lengths)
    return run


def timers_for(fns, block_s=0.025):
    """A warm torch.utils.benchmark Timer per fn and its number of calls per ~block_s block."""
    timers, numbers = [], []
    for fn in fns:
        fn()
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn},
                                num_threads=torch.get_num_threads())
        once = timer.timeit(3).median
        timers.append(timer)
        numbers.append(max(1, int(block_s / once)))
    return timers, numbers


def interleaved(timers, numbers, rounds):
    """Block times (ms per call) of each timer, round by round, alternating."""
    times = [[] for _ in timers]
    for _ in range(rounds):
        for i, timer in enumerate(timers):
            times[i].append(timer.timeit(numbers[i]).median * 1e3)
    return times


def run(shape, cases, passes, rounds, seed=0, repeats=1, pack="torch"):
    cfg = SHAPES[shape]
    batches = make_batches(cfg, 4 if shape == "agnews" else 1, seed)
    jobs = []  # (case, pass, torch layout, timers, numbers)
    for case in cases:
        cls, kwargs, torch_layout = CASES[case]
        torch.manual_seed(seed)
        ref = cls(cfg["input_size"], cfg["hidden_size"], batch_first=True, **kwargs)
        ours = getattr(fastrnn, cls.__name__)(cfg["input_size"], cfg["hidden_size"],
                                              batch_first=True, **kwargs)
        ours.load_state_dict(ref.state_dict())
        for pass_ in passes:
            if case == "lstm_vs_padded" and pass_ == "infer":
                continue
            train = pass_ == "train"
            jobs.append((case, pass_, torch_layout, *timers_for(
                [step_fn(ours, batches, "packed", train, PACKS[pack]),
                 step_fn(ref, batches, torch_layout, train)])))
    times = {job[:2]: ([], [], []) for job in jobs}  # ours, torch, per-repeat ratios
    for _ in range(repeats):
        for case, pass_, _, timers, numbers in jobs:
            ours_ms, torch_ms = interleaved(timers, numbers, max(1, rounds // repeats))
            kept = times[(case, pass_)]
            kept[0].extend(ours_ms)
            kept[1].extend(torch_ms)
            kept[2].append(statistics.median(b / a for a, b in zip(ours_ms, torch_ms)))
    rows = []
    for case, pass_, torch_layout, _, _ in jobs:
        ours_ms, torch_ms, runs = times[(case, pass_)]
        ratio = statistics.median(b / a for a, b in zip(ours_ms, torch_ms))
        target = None if pack != "torch" else (
            TARGETS if shape == "agnews" else LARGE_TARGETS).get((case, pass_))
        row = dict(shape=shape, case=case, pass_=pass_, torch_layout=torch_layout,
                   batches_per_call=len(batches), fastrnn_pack=pack,
                   fastrnn_ms=statistics.median(ours_ms),
                   torch_ms=statistics.median(torch_ms), speedup=ratio,
                   speedup_low=min(runs), speedup_high=max(runs), repeats=repeats,
                   target=target, met=None if target is None else ratio >= target)
        rows.append(row)
        print_row(row)
    return rows


def print_row(row):
    print(module_step_row(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["agnews"], choices=list(SHAPES))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--passes", nargs="+", default=["train", "infer"],
                        choices=["train", "infer"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every case this many times in turn (rounds split over them)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pack", default="torch", choices=list(PACKS),
                        help="the packing of fastrnn's side (torch.nn's side: torch's)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    info["load_avg_start"] = os.getloadavg()
    print(f"machine: {info}")
    print("ms per call (4 AG News batches; large: 1 batch), medians; speed-up = median of "
          "per-round torch/fastrnn")
    print(MODULE_STEP_HEADER)
    rows = []
    for shape in args.shapes:
        cases = args.cases if shape == "agnews" else [
            c for c in args.cases if c in ("lstm", "lstm_vs_padded")]
        passes = args.passes if shape == "agnews" else ["train"]
        rows += run(shape, cases, passes, args.rounds if shape == "agnews" else
                    max(5, args.rounds // 3), repeats=args.repeats, pack=args.pack)
    info["load_avg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
