"""The speed envelope: fastrnn.X against torch.nn.X over cell x batch x hidden x layout x pass x
threads, interleaved in one process, as ratios of medians; JSON and a heatmap figure.

    python benchmarks/bench_envelope.py --json benchmarks/results/envelope-cpu.json \
        [--cells lstm,gru,rnn_tanh] [--batches 1,16,64,256] [--hidden 32,128,512,1024] \
        [--layouts packed,padded,onestep] [--passes train,infer] [--threads 1,2] [--length 32]
    python benchmarks/bench_envelope.py --busy 2 ...   # with 2 busy processes on the cores
    python benchmarks/bench_envelope.py --from-json benchmarks/results/envelope-cpu.json \
        --plot docs/figures/envelope-cpu.png [--cells lstm] [--threads 1]

One call is what a user's code does with the module (input size = hidden size, 1 layer):
- packed: ``pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)`` of a
  padded batch with lengths drawn uniformly from 1..length (the longest = length), the user's
  packing included; torch.nn's side is the faster of torch.nn on that PackedSequence and
  torch.nn on the padded batch as it is (its oneDNN path for the LSTM), each round;
- padded: a dense time-major batch of ``length`` steps;
- onestep: one step, ``hx`` given (the decoder and streaming pattern);
- train: a loss on the output and the final state, and its backward; infer: under no_grad.
Each round times a block of calls of each side (~20 ms, at least one call) back to back, so
load changes hit both; the speed-up is the median over rounds of torch.nn's time / fastrnn's.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastrnn  # noqa: E402
from bench_cpu import machine  # noqa: E402

CELLS = {"lstm": ("LSTM", {}), "gru": ("GRU", {}), "rnn_tanh": ("RNN", {"nonlinearity": "tanh"})}
BLOCK_S = 0.02


def make_call(module, layout, train, batch, hidden, length, gen):
    """A zero-argument function running one user call of ``module``."""
    if layout == "onestep":
        x = torch.randn(1, batch, hidden, generator=gen)
        h = torch.randn(1, batch, hidden, generator=gen)
        hx = (h, h.clone()) if isinstance(module, torch.nn.LSTM) else h
        args = (x, hx)
    elif layout == "padded":
        args = (torch.randn(length, batch, hidden, generator=gen),)
    else:
        x = torch.randn(batch, length, hidden, generator=gen)
        lengths = torch.randint(1, length + 1, (batch,), generator=gen)
        lengths[0] = length
        args = (x, lengths)
    packed = layout == "packed"

    def run():
        inputs = [a.requires_grad_() if train and i == 0 else a for i, a in enumerate(args)]
        if packed:
            inputs = [pack_padded_sequence(inputs[0], inputs[1], batch_first=True,
                                           enforce_sorted=False)]
        out, state = module(*inputs)
        if not train:
            return
        out = out.data if packed else out
        h_n = state[0] if isinstance(state, tuple) else state
        (out.sum() + h_n.sum()).backward()

    if train:
        return run

    def infer():
        with torch.no_grad():
            run()
    return infer


def timed_block(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def measure(cell, batch, hidden, layout, pass_, threads, length, rounds, seed=0):
    torch.set_num_threads(threads)
    mode, kwargs = CELLS[cell]
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, mode)(hidden, hidden, **kwargs)
    ours = getattr(fastrnn, mode)(hidden, hidden, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    train = pass_ == "train"
    gen = torch.Generator().manual_seed(seed)
    sides = {"fastrnn": make_call(ours, layout, train, batch, hidden, length, gen)}
    gen = torch.Generator().manual_seed(seed)
    sides["torch"] = make_call(theirs, layout, train, batch, hidden, length, gen)
    if layout == "packed":  # torch.nn's other layout for the same batch: padded, full length
        gen = torch.Generator().manual_seed(seed)
        sides["torch padded"] = make_call(theirs, "padded", train, batch, hidden, length, gen)
    numbers = {}
    for name, fn in sides.items():  # warm-up, and the block size
        fn()
        numbers[name] = max(1, round(BLOCK_S / max(timed_block(fn, 1), 1e-6)))
    times = {name: [] for name in sides}
    ratios = []
    for _ in range(rounds):
        for name, fn in sides.items():
            times[name].append(timed_block(fn, numbers[name]))
        best_torch = min(times[n][-1] for n in sides if n != "fastrnn")
        ratios.append(best_torch / times["fastrnn"][-1])
    torch_layouts = [n for n in sides if n != "fastrnn"]
    faster = min(torch_layouts, key=lambda n: statistics.median(times[n]))
    return {"cell": cell, "batch": batch, "hidden": hidden, "layout": layout, "pass": pass_,
            "threads": threads, "length": length, "rounds": rounds,
            "fastrnn_ms": statistics.median(times["fastrnn"]) * 1e3,
            "torch_ms": statistics.median(times[faster]) * 1e3,
            "torch_layout": "padded" if faster == "torch padded" else layout,
            "speedup": statistics.median(ratios)}


def plot(rows, path, cells, threads, title=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    rows = [r for r in rows if r["cell"] in cells and r["threads"] in threads]
    layouts = [l for l in ("packed", "padded", "onestep") if any(r["layout"] == l for r in rows)]
    columns = [(c, t, p) for c in cells for t in threads for p in ("train", "infer")
               if any(r["cell"] == c and r["threads"] == t and r["pass"] == p for r in rows)]
    batches = sorted({r["batch"] for r in rows})
    hiddens = sorted({r["hidden"] for r in rows})
    fig, axes = plt.subplots(len(layouts), len(columns), squeeze=False,
                             figsize=(2.6 * len(columns) + 1, 2.3 * len(layouts) + 0.8))
    norm = LogNorm(vmin=0.125, vmax=8)  # 1x in the middle
    image = None
    for i, layout in enumerate(layouts):
        for j, (cell, t, pass_) in enumerate(columns):
            ax = axes[i][j]
            grid = [[float("nan")] * len(batches) for _ in hiddens]
            for r in rows:
                if (r["layout"], r["cell"], r["threads"], r["pass"]) == (layout, cell, t, pass_):
                    grid[hiddens.index(r["hidden"])][batches.index(r["batch"])] = r["speedup"]
            image = ax.imshow(grid, cmap="RdYlGn", norm=norm, origin="lower", aspect="auto")
            for y, line in enumerate(grid):
                for x, value in enumerate(line):
                    if value == value:
                        ax.text(x, y, f"{value:.1f}" if value < 10 else f"{value:.0f}",
                                ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(batches)), [str(b) for b in batches])
            ax.set_yticks(range(len(hiddens)), [str(h) for h in hiddens] if j == 0 else [])
            if i == len(layouts) - 1:
                ax.set_xlabel("batch")
            if j == 0:
                ax.set_ylabel(f"{layout}\nhidden")
            if i == 0:
                ax.set_title(f"{cell} {pass_}" + (f", {t} threads" if len(threads) > 1 else ""),
                             fontsize=10)
    bar = fig.colorbar(image, ax=axes, label="speed-up over torch.nn (x)", shrink=0.8)
    ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8]
    bar.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])
    bar.minorticks_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def start_busy(count, seconds):
    """``count`` processes that spin on a core for at most ``seconds`` (a busy machine)."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]


def ints(text):
    return [int(x) for x in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", default="lstm,gru,rnn_tanh")
    p.add_argument("--batches", type=ints, default=[1, 16, 64, 256])
    p.add_argument("--hidden", type=ints, default=[32, 128, 512, 1024])
    p.add_argument("--layouts", default="packed,padded,onestep")
    p.add_argument("--passes", default="train,infer")
    p.add_argument("--threads", type=ints, default=[1, 2])
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--busy", type=int, default=0, metavar="K",
                   help="K busy processes on the cores while measuring (a loaded machine)")
    p.add_argument("--busy-seconds", type=float, default=1800,
                   help="the busy processes end after this long in any case")
    p.add_argument("--json")
    p.add_argument("--from-json", help="plot these results instead of measuring")
    p.add_argument("--plot", help="heatmap of the speed-ups (matplotlib)")
    args = p.parse_args()
    cells = args.cells.split(",")
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
    else:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        busy = start_busy(args.busy, args.busy_seconds)
        report = {"machine": machine(), "commit": commit.stdout.strip() or None, "busy": args.busy,
                  "command": " ".join(sys.argv), "load_average_start": os.getloadavg()[0],
                  "rows": []}
        for threads in args.threads:
            for cell in cells:
                for layout in args.layouts.split(","):
                    for pass_ in args.passes.split(","):
                        for hidden in args.hidden:
                            for batch in args.batches:
                                big = batch * hidden * hidden * (1 if layout == "onestep"
                                                                 else args.length)
                                rounds = args.rounds if big < 2 ** 31 else max(3, args.rounds // 2)
                                row = measure(cell, batch, hidden, layout, pass_, threads,
                                              args.length, rounds)
                                report["rows"].append(row)
                                print(f"{cell:8} {layout:7} {pass_:5} t{threads} H{hidden:<5} "
                                      f"B{batch:<4} fastrnn {row['fastrnn_ms']:9.3f} ms  torch "
                                      f"({row['torch_layout']}) {row['torch_ms']:9.3f} ms  "
                                      f"{row['speedup']:6.2f}x", flush=True)
        report["load_average_end"] = os.getloadavg()[0]
        for process in busy:
            process.kill()
        speedups = sorted(r["speedup"] for r in report["rows"])
        worst = min(report["rows"], key=lambda r: r["speedup"])
        report["median_speedup"] = statistics.median(speedups)
        report["worst"] = worst
        print(f"median {report['median_speedup']:.2f}x; worst {worst['speedup']:.2f}x "
              f"({worst['cell']} {worst['layout']} {worst['pass']} t{worst['threads']} "
              f"H{worst['hidden']} B{worst['batch']}); load {report['load_average_start']:.2f}"
              f" -> {report['load_average_end']:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    if args.plot:
        threads = sorted({r["threads"] for r in report["rows"]} & set(args.threads))
        m = report["machine"]
        title = (f"fastrnn vs torch.nn, {', '.join(map(str, threads))} thread(s): {m['cpu']}, "
                 f"{m['cores']} cores, torch {m['torch']}, {m['date']}, commit "
                 f"{report.get('commit')}; length {report['rows'][0]['length']}")
        plot(report["rows"], args.plot, cells, threads, title)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
