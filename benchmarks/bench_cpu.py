"""fastrnn vs torch.nn on the CPU, in one run, with torch.utils.benchmark.

    python benchmarks/bench_cpu.py [--shapes agnews large] [--json results.json]

Rows, float32, forward alone and forward+backward, each timed as a median:
- layer: one layer in one direction; fastrnn = pack + input projection + fused op,
  torch = torch.nn.<Cell> (1 layer) on the same batch, packed and padded;
- module: fastrnn.<Cell> vs torch.nn.<Cell>, 2 layers, bidirectional (when the
  fastrnn modules are available).
lstm_proj (LSTM with proj_size = hidden/4) compares the modules at both levels ("layer"
= 1 layer, 1 direction), since the op alone has no projection.
Shapes: agnews = batch 16, input 64, hidden 32; large = batch 64, input 512, hidden 512;
lengths drawn from real AG News rows (../shared/data/ag_news/test.csv, else the committed
histogram of the same rows, benchmarks/agnews_test_lengths.json).
"""
import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.utils.benchmark as benchmark
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, os.path.dirname(__file__))
import fastrnn  # noqa: E402
import fastrnn.info  # noqa: E402
from agnews_lengths import length_population, sample_lengths  # noqa: E402
from tables import CPU_SPEED_HEADER, cpu_speed_row  # noqa: E402

SHAPES = {
    "agnews": dict(batch=16, input_size=64, hidden_size=32),
    "large": dict(batch=64, input_size=512, hidden_size=512),
}
TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN,
                 "lstm_proj": torch.nn.LSTM}
# Constructor arguments of each benchmarked cell; lstm_proj = LSTM with proj_size hidden/4.
EXTRA = {"rnn_tanh": lambda hidden: {"nonlinearity": "tanh"},
         "lstm_proj": lambda hidden: {"proj_size": hidden // 4}}


def layer_case(cell, impl, layout, x, lengths, module, backward):
    """A callable running one layer-direction; `impl` is 'fastrnn' or 'torch'."""
    batch, hidden = x.shape[1], module.hidden_size
    h0 = torch.zeros(batch, hidden)

    def fastrnn_run():
        if layout == "packed":
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            data, batch_sizes = packed.data, packed.batch_sizes
        else:
            data = x.reshape(-1, x.shape[2])
            batch_sizes = torch.full((x.shape[0],), batch, dtype=torch.int64)
        proj = torch.addmm(module.bias_ih_l0, data, module.weight_ih_l0.t())
        if cell == "lstm":
            out = fastrnn.lstm(proj, batch_sizes, module.weight_hh_l0, module.bias_hh_l0, h0, h0)
        else:
            out = getattr(fastrnn, cell)(proj, batch_sizes, module.weight_hh_l0,
                                         module.bias_hh_l0, h0)
        return out[0]

    def torch_run():
        if layout == "packed":
            return module(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data
        return module(x)[0]

    return with_backward(fastrnn_run if impl == "fastrnn" else torch_run, backward)


def module_case(impl, layout, x, lengths, module, backward):
    def run():
        if layout == "packed":
            return module(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data
        return module(x)[0]

    return with_backward(run, backward)


def with_backward(fn, backward):
    if not backward:
        def forward_only():
            with torch.no_grad():
                fn()
        return forward_only

    def forward_backward():
        fn().sum().backward()
    return forward_backward


def median_ms(fn, min_run_time):
    fn()  # warm-up
    # torch.utils.benchmark.Timer runs on 1 thread unless told otherwise.
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def run(shapes, cells, levels, min_run_time, seed=0):
    population, _ = length_population()
    results = []
    for shape in shapes:
        cfg = SHAPES[shape]
        gen = torch.Generator().manual_seed(seed)
        lengths = sample_lengths(cfg["batch"], population, gen)
        x = torch.randn(int(lengths.max()), cfg["batch"], cfg["input_size"], generator=gen)
        for cell in cells:
            for level in levels:
                kwargs = dict(num_layers=2, bidirectional=True) if level == "module" else {}
                extra = EXTRA.get(cell, lambda hidden: {})(cfg["hidden_size"])
                torch.manual_seed(seed)
                ref = TORCH_CLASSES[cell](cfg["input_size"], cfg["hidden_size"], **kwargs, **extra)
                ours = None
                modules_only = level == "module" or cell == "lstm_proj"
                if modules_only:
                    ours = getattr(fastrnn, TORCH_CLASSES[cell].__name__)(
                        cfg["input_size"], cfg["hidden_size"], **kwargs, **extra)
                    ours.load_state_dict(ref.state_dict())
                for backward in (False, True):
                    row = dict(shape=shape, cell=cell, level=level,
                               pass_="forward+backward" if backward else "forward",
                               tokens=int(lengths.sum()), steps=int(lengths.max()))
                    for impl in ("fastrnn", "torch"):
                        for layout in ("packed", "padded"):
                            if not modules_only:
                                fn = layer_case(cell, impl, layout, x, lengths, ref, backward)
                            else:
                                module = ours if impl == "fastrnn" else ref
                                fn = module_case(impl, layout, x, lengths, module, backward)
                            row[f"{impl}_{layout}_ms"] = median_ms(fn, min_run_time)
                    row["speedup_vs_torch_packed"] = row["torch_packed_ms"] / row["fastrnn_packed_ms"]
                    row["speedup_vs_torch_padded"] = row["torch_padded_ms"] / row["fastrnn_packed_ms"]
                    results.append(row)
                    print_row(row)
    return results


def print_row(row):
    print(cpu_speed_row(row), flush=True)


def machine():
    """The CPU machine a result comes from (bench_module_cpu.py records the same)."""
    built = fastrnn.info.build_info()
    simd = "AVX-512" if built["avx512"] == "1" else "AVX2" if built["avx2"] == "1" else "no SIMD"
    return dict(cpu=fastrnn.info.cpu_name(), cores=os.cpu_count(), threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                date=time.strftime("%Y-%m-%d"), simd=simd)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--cells", nargs="+", default=list(TORCH_CLASSES),
                        choices=list(TORCH_CLASSES))
    parser.add_argument("--levels", nargs="+", default=["layer", "module"],
                        choices=["layer", "module"])
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (default: torch's default)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "module" in args.levels and not hasattr(fastrnn, "LSTM"):
        args.levels = [lvl for lvl in args.levels if lvl != "module"]
    info = machine()
    print(f"machine: {info}")
    print("times in ms (median); speed-ups are torch time / fastrnn packed time")
    print(CPU_SPEED_HEADER)
    results = run(args.shapes, args.cells, args.levels, args.min_run_time)
    # Memory that autograd keeps for backward (benchmarks/saved_memory.py).
    import saved_memory
    print()
    saved = saved_memory.run()
    saved_memory.print_table(saved)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=results, saved_memory=saved), f, indent=1)


if __name__ == "__main__":
    main()
