"""Speed of what torch.nn lacks (issue 15): the LayerNorm cells and the regularised LSTM/GRU
(weight_drop, zoneout), at module level on the CPU, in one run.

    python benchmarks/bench_beyond_nn.py [--threads 2] [--rounds 15] [--json out.json]

A step is the AG News classifier's use of its recurrent layer, as bench_module_cpu.py (the
user's pack_padded_sequence of a batch-first embedding output, the module in training mode,
a loss on out.data and h_n, backward), batch 16, embedding 64, hidden 32, float32, lengths
drawn from real AG News rows, 4 batches per timed call. Each case is timed against a
baseline, interleaved round by round (bench_module_cpu.interleaved):
  - "plain ops": the same module with its recurrence in plain torch ops, a step at a time
    (fastrnn.reference.plain_ops(): the torch.nn-style Python loop, with the same masks and
    parameters); target: fastrnn >= 8x faster;
  - "fastrnn.LSTM": LayerNormLSTM against the plain fused LSTM of the same size; target:
    LayerNormLSTM's time <= 1.5x fastrnn.LSTM's (a "speed-up" >= 0.67).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastrnn  # noqa: E402
from fastrnn import reference  # noqa: E402
from bench_cpu import machine  # noqa: E402
from bench_module_cpu import SHAPES, interleaved, make_batches, step_fn  # noqa: E402
from tables import BEYOND_NN_HEADER, beyond_nn_row  # noqa: E402

REGULARISED = dict(weight_drop=0.5, zoneout=0.1)
# case -> (module class, constructor kwargs, baseline, minimum speed-up)
CASES = {
    "LayerNormLSTM": (fastrnn.LayerNormLSTM, {}, "plain ops", 8.0),
    "LayerNormGRU": (fastrnn.LayerNormGRU, {}, "plain ops", 8.0),
    "LSTM weight_drop=0.5 zoneout=0.1": (fastrnn.LSTM, REGULARISED, "plain ops", 8.0),
    "GRU weight_drop=0.5 zoneout=0.1": (fastrnn.GRU, REGULARISED, "plain ops", 8.0),
    "LayerNormLSTM vs LSTM": (fastrnn.LayerNormLSTM, {}, "fastrnn.LSTM", 1 / 1.5),
}


def plain(fn):
    def run():
        with reference.plain_ops():
            fn()
    return run


def run(cases, rounds, seed=0):
    cfg = SHAPES["agnews"]
    batches = make_batches(cfg, 4, seed)
    rows = []
    for case in cases:
        cls, kwargs, baseline, target = CASES[case]
        torch.manual_seed(seed)
        module = cls(cfg["input_size"], cfg["hidden_size"], batch_first=True, **kwargs)
        ours = step_fn(module, batches, "packed", train=True)
        if baseline == "plain ops":
            other = plain(ours)
        else:
            other = step_fn(fastrnn.LSTM(cfg["input_size"], cfg["hidden_size"],
                                         batch_first=True), batches, "packed", train=True)
        (ms_ours, ms_other), ratio = interleaved([ours, other], rounds)
        row = dict(case=case, baseline=baseline, fastrnn_ms=ms_ours, baseline_ms=ms_other,
                   speedup=ratio, target=target, met=ratio >= target)
        rows.append(row)
        print(beyond_nn_row(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    info["load_avg_start"] = os.getloadavg()
    print(f"machine: {info}")
    print("ms per call (4 AG News batches, training step), medians; speed-up = median of "
          "per-round baseline/fastrnn")
    print(BEYOND_NN_HEADER)
    rows = run(args.cases, args.rounds)
    info["load_avg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
