"""fastrnn vs torch.nn (cuDNN) on a CUDA GPU, in one run, with torch.utils.benchmark.

    python benchmarks/bench_gpu.py [--json results.json] [--min-run-time 0.3]

float32, one-layer unidirectional modules (fastrnn.X vs torch.nn.X, same weights),
forward alone (under no_grad) and forward+backward, each timed as a median, with
the peak memory (torch.cuda.max_memory_allocated above what was allocated before
the call). Packed timings include pack_padded_sequence(..., enforce_sorted=False).
Shapes (the issue's):
- agnews:   batch 16, input 64, hidden 32, lengths of real AG News rows; LSTM, GRU,
            RNN; packed and padded; fastrnn also with FASTRNN_CUDA_PATH=per_step.
- fastrnns: PyTorch's benchmarks/fastrnns shape: seq 100, batch 64, input 512,
            hidden 512, all lengths equal (padded and packed); LSTM.
- varlen:   the same with lengths drawn uniformly from 30-100, packed; LSTM.
At the fastrnns and varlen shapes torch.nn is also timed with cuDNN's TF32 off
(`torch_fp32_*`): torch's default lets cuDNN's RNNs use TF32 tensor cores while
fastrnn's per-step GEMMs run in full float32 (ATen's matmul flag is off by default),
so that row is the like-for-like float32 comparison.
Targets (checked at the end, "targets" in the JSON): agnews LSTM packed >= 5x faster
than torch.nn packed and >= 2x faster than torch.nn padded; fastrnns within 1.1x of
cuDNN (padded); varlen packed >= 1.5x faster than cuDNN packed.
"""
import argparse
import json
import os
import platform
import sys

import torch
import torch.utils.benchmark as benchmark
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, os.path.dirname(__file__))
import fastrnn  # noqa: E402
from agnews_lengths import length_population, sample_lengths  # noqa: E402

CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN"}


def shapes(population, seed):
    gen = torch.Generator().manual_seed(seed)
    agnews = sample_lengths(16, population, gen)
    varlen = torch.randint(30, 101, (64,), generator=gen)
    varlen[0] = 100
    return {
        "agnews": dict(input_size=64, hidden_size=32, lengths=agnews,
                       cells=["lstm", "gru", "rnn_tanh"], layouts=["packed", "padded"]),
        "fastrnns": dict(input_size=512, hidden_size=512, lengths=torch.full((64,), 100),
                         cells=["lstm"], layouts=["padded", "packed"]),
        "varlen": dict(input_size=512, hidden_size=512, lengths=varlen, cells=["lstm"],
                       layouts=["packed", "padded"]),
    }


def make_run(module, x, lengths, layout, backward):
    def forward():
        if layout == "packed":
            return module(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data
        return module(x)[0]

    if backward:
        def run():
            forward().sum().backward()
    else:
        def run():
            with torch.no_grad():
                forward()
    return run


def measure(run, min_run_time, cuda_path, cudnn_tf32=True):
    """Median ms and peak bytes above the baseline, with FASTRNN_CUDA_PATH set (and
    cuDNN's TF32 switch as given)."""
    old = os.environ.get("FASTRNN_CUDA_PATH")
    old_tf32 = torch.backends.cudnn.allow_tf32
    os.environ["FASTRNN_CUDA_PATH"] = cuda_path
    torch.backends.cudnn.allow_tf32 = cudnn_tf32
    try:
        run()  # warm-up (cuDNN plans, cuBLAS handles, caching allocator)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        timer = benchmark.Timer(stmt="run()", globals={"run": run})
        ms = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
    finally:
        torch.backends.cudnn.allow_tf32 = old_tf32
        if old is None:
            del os.environ["FASTRNN_CUDA_PATH"]
        else:
            os.environ["FASTRNN_CUDA_PATH"] = old
    return ms, peak


def run_all(min_run_time, seed, only, on_row=None):
    """Runs every shape; calls on_row(results, source) after each row (so that partial
    results survive a timeout). A failed measurement is reported, recorded as NaN
    with its error in row["errors"], and the run goes on."""
    population, source = length_population()
    print(f"AG News lengths from: {source}", flush=True)
    results = []
    for shape, cfg in shapes(population, seed).items():
        if only and shape not in only:
            continue
        lengths = cfg["lengths"]
        batch, steps = lengths.numel(), int(lengths.max())
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(steps, batch, cfg["input_size"], generator=gen).cuda()
        for cell in cfg["cells"]:
            extra = {"nonlinearity": "tanh"} if cell == "rnn_tanh" else {}
            torch.manual_seed(seed)
            ref = getattr(torch.nn, CLASSES[cell])(cfg["input_size"], cfg["hidden_size"],
                                                   **extra).cuda()
            ours = getattr(fastrnn, CLASSES[cell])(cfg["input_size"], cfg["hidden_size"],
                                                   **extra).cuda()
            ours.load_state_dict(ref.state_dict())
            for backward in (False, True):
                row = dict(shape=shape, cell=cell, batch=batch, steps=steps,
                           tokens=int(lengths.sum()), input_size=cfg["input_size"],
                           hidden_size=cfg["hidden_size"],
                           pass_="forward+backward" if backward else "forward")
                for layout in cfg["layouts"]:
                    impls = [("fastrnn", ours, "auto", True), ("torch", ref, "auto", True)]
                    if shape == "agnews":
                        impls.insert(1, ("fastrnn_per_step", ours, "per_step", True))
                    else:  # float32 against float32: cuDNN without TF32
                        impls.append(("torch_fp32", ref, "auto", False))
                    for name, module, path, tf32 in impls:
                        for p in module.parameters():
                            p.grad = None
                        try:
                            ms, peak = measure(make_run(module, x, lengths, layout, backward),
                                               min_run_time, path, tf32)
                        except Exception as e:  # noqa: BLE001 - record it and go on
                            print(f"FAILED {shape} {cell} {row['pass_']} {name} {layout}: "
                                  f"{e!r}", flush=True)
                            row.setdefault("errors", []).append(f"{name}_{layout}: {e!r}")
                            ms, peak = float("nan"), float("nan")
                        row[f"{name}_{layout}_ms"] = ms
                        row[f"{name}_{layout}_peak_bytes"] = peak
                for layout in cfg["layouts"]:
                    row[f"speedup_{layout}"] = row[f"torch_{layout}_ms"] / row[f"fastrnn_{layout}_ms"]
                    if f"torch_fp32_{layout}_ms" in row:
                        row[f"speedup_fp32_{layout}"] = (row[f"torch_fp32_{layout}_ms"]
                                                         / row[f"fastrnn_{layout}_ms"])
                print_row(row, cfg["layouts"])
                results.append(row)
                if on_row is not None:
                    on_row(results, source)
    return results, source


def launch_counts(population, seed):
    """GPU work per fastrnn LSTM op call (forward, backward) on each CUDA path, from
    torch.profiler's CUDA activity: kernels and memcpy/memset, per call and per time step,
    at the AG News shape (batch 16, hidden 32, its real lengths) and the fastrnns shape
    (T100, B64, H512). benchmarks/results/gpu-launch-counts.md has the counts read from
    the code; this measures them (cuBLAS may run more than one kernel per GEMM)."""
    from torch.profiler import ProfilerActivity, profile

    gen = torch.Generator().manual_seed(seed)
    lengths = {"agnews": (sample_lengths(16, population, gen), 32),
               "fastrnns": (torch.full((64,), 100), 512)}
    rows = []
    for shape, (lens, hidden) in lengths.items():
        steps = int(lens.max())
        bs = (lens.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1)
        tokens, batch = int(bs.sum()), int(bs[0])
        x = [torch.randn(tokens, 4 * hidden, device="cuda"), bs,
             torch.randn(4 * hidden, hidden, device="cuda") * hidden ** -0.5,
             torch.randn(4 * hidden, device="cuda"), torch.randn(batch, hidden, device="cuda"),
             torch.randn(batch, hidden, device="cuda")]
        grads = [torch.randn(tokens, hidden, device="cuda")] + [
            torch.randn(batch, hidden, device="cuda") for _ in range(2)]
        for path in ("persistent", "per_step"):
            os.environ["FASTRNN_CUDA_PATH"] = path
            row = dict(shape=shape, path=path, steps=steps, batch=batch, hidden=hidden)
            try:
                fwd = torch.ops.fastrnn.lstm_forward(*x, False)
                calls = {"forward": lambda: torch.ops.fastrnn.lstm_forward(*x, False),
                         "backward": lambda: torch.ops.fastrnn.lstm_backward(
                             *grads, bs, x[2], x[4], x[5], fwd[0], fwd[3], False)}
                for name, call in calls.items():
                    call()
                    torch.cuda.synchronize()
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        call()
                        torch.cuda.synchronize()
                    names = [e.name for e in prof.events()
                             if e.device_type == torch.autograd.DeviceType.CUDA]
                    copies = sum(1 for n in names if "memcpy" in n.lower() or "memset" in n.lower())
                    row[f"{name}_kernels"] = len(names) - copies
                    row[f"{name}_copies"] = copies
                    row[f"{name}_per_step"] = len(names) / steps
            except RuntimeError as e:  # e.g. the persistent kernels do not fit hidden 512
                row["error"] = repr(e)[:200]
            finally:
                del os.environ["FASTRNN_CUDA_PATH"]
            print(f"launches {row}", flush=True)
            rows.append(row)
    return rows


def print_row(row, layouts):
    """One line of times (ms) and speed-ups (torch / fastrnn, same layout), one of memory."""
    parts = [f"{row['shape']:8s} {row['cell']:8s} {row['pass_']:16s}"]
    for key in sorted(k for k in row if k.endswith("_ms")):
        parts.append(f"{key[:-3]}={row[key]:.3f}ms")
    for layout in layouts:
        parts.append(f"speedup_{layout}={row[f'speedup_{layout}']:.2f}x")
        if f"speedup_fp32_{layout}" in row:
            parts.append(f"speedup_fp32_{layout}={row[f'speedup_fp32_{layout}']:.2f}x")
    mem = [f"{k[:-11]}={row[k] / 2**20:.1f}MiB" for k in sorted(row) if k.endswith("_peak_bytes")]
    print(" ".join(parts), flush=True)
    print("    peak memory: " + " ".join(mem), flush=True)


def check_targets(results):
    def find(shape, cell, pass_):
        return next((r for r in results if r["shape"] == shape and r["cell"] == cell
                     and r["pass_"] == pass_), None)

    targets = []
    for pass_ in ("forward", "forward+backward"):
        for shape, key, want, what in [
            ("agnews", ("fastrnn_packed_ms", "torch_packed_ms"), 5.0,
             "agnews LSTM packed >= 5x faster than torch.nn packed (cuDNN)"),
            ("agnews", ("fastrnn_packed_ms", "torch_padded_ms"), 2.0,
             "agnews LSTM packed >= 2x faster than torch.nn padded (cuDNN)"),
            ("fastrnns", ("fastrnn_padded_ms", "torch_padded_ms"), 1 / 1.1,
             "fastrnns LSTM within 1.1x of cuDNN (padded)"),
            ("fastrnns", ("fastrnn_padded_ms", "torch_fp32_padded_ms"), 1 / 1.1,
             "fastrnns LSTM within 1.1x of cuDNN without TF32 (padded; float32 vs float32)"),
            ("varlen", ("fastrnn_packed_ms", "torch_packed_ms"), 1.5,
             "varlen LSTM packed >= 1.5x faster than cuDNN packed"),
        ]:
            row = find(shape, "lstm", pass_)
            if row is None:
                continue
            speedup = row[key[1]] / row[key[0]]
            targets.append(dict(target=f"{what}, {pass_}", speedup=speedup, needed=want,
                                met=speedup >= want))
    for t in targets:
        print(f"{'MET   ' if t['met'] else 'MISSED'} {t['target']}: {t['speedup']:.2f}x "
              f"(needed {t['needed']:.2f}x)", flush=True)
    return targets


def machine():
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return dict(gpu=props.name, sms=props.multi_processor_count,
                smem_per_block_optin=getattr(props, "shared_memory_per_block_optin", None),
                torch=torch.__version__, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
                # torch's defaults: cuDNN's RNNs may use TF32 tensor cores, fastrnn's
                # per-step GEMMs (cuBLAS through ATen) follow the matmul flag (off).
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", nargs="*", help="only these shapes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA GPU")
    info = machine()
    print(f"machine: {info}", flush=True)

    def dump(results, source, targets=None, complete=False):
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(machine=info, lengths_source=source, complete=complete,
                               results=results, targets=targets), f, indent=1)

    population, _ = length_population()
    try:
        info["launches"] = launch_counts(population, args.seed)
    except Exception as e:  # noqa: BLE001 - the timings matter more
        print(f"launch counts failed: {e!r}", flush=True)
    results, source = run_all(args.min_run_time, args.seed, args.shapes, on_row=dump)
    targets = check_targets(results)
    dump(results, source, targets, complete=True)
    failed = sum(len(r.get("errors", [])) for r in results)
    if failed:
        sys.exit(f"bench_gpu.py: {failed} measurement(s) failed")


if __name__ == "__main__":
    main()
