"""``python -m fastrnn.agnews {train,compare,evaluate,predict}`` (console script: fastrnn-agnews)."""
import argparse
import dataclasses
import json
import os
import sys

import torch

from .data import CLASSES, DataError, default_data_dir, ensure_files, read_csv
from .models import BACKENDS, MODELS
from .training import (EncodedRows, TrainConfig, evaluate, load_checkpoint, load_corpus, predict,
                       save_checkpoint, train)


def _training_options(parser, backend=True):
    d = TrainConfig()
    parser.add_argument("--model", choices=list(MODELS), default=d.model)
    if backend:
        parser.add_argument("--backend", choices=BACKENDS, default=d.backend,
                            help="recurrent layer: fastrnn's or torch.nn's (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="global batch size (split across processes under torchrun)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--embed-dim", type=int, default=d.embed_dim)
    parser.add_argument("--hidden-dim", type=int, default=d.hidden_dim)
    parser.add_argument("--min-freq", type=int, default=d.min_freq,
                        help="drop training tokens seen fewer times (they become <unk>)")
    parser.add_argument("--device", default=d.device, help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--bucket", action="store_true",
                        help="batch rows of similar length together (less padding)")
    parser.add_argument("--sparse-embedding", action="store_true",
                        help="sparse embedding gradients with SparseAdam for the table (lazy Adam: "
                             "faster on large vocabularies, not the tutorial's exact update)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training rows")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    _data_options(parser)
    parser.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _data_options(parser):
    parser.add_argument("--data-dir", default=None,
                        help=f"folder with train.csv/test.csv (default {default_data_dir()}, "
                             "downloaded there when missing)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing files")


def _config(args, backend=None) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if backend is not None:
        values["backend"] = backend
    return TrainConfig(**values)


def _corpus(args, with_test=True):
    return load_corpus(args.data_dir, getattr(args, "limit", None), getattr(args, "min_freq", 1),
                       with_test=with_test, allow_download=not args.no_download,
                       progress=not getattr(args, "no_progress", False))


def environment():
    """Where a measurement was taken."""
    import datetime
    import platform

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def _write_json(path, payload):
    if path:
        with open(path, "w") as f:
            json.dump({**payload, "environment": environment()}, f, indent=2)


def cmd_train(args):
    config = _config(args)
    corpus = _corpus(args)
    print(f"AG News: {len(corpus.train)} training rows, {len(corpus.test)} test rows, "
          f"vocabulary {len(corpus.vocab)}; model {config.model}, backend {config.backend}, "
          f"device {config.device}")
    result = train(config, corpus, progress=not args.no_progress)
    if result["rank"] != 0:
        return
    last = result["epochs"][-1]
    total = sum(e["epoch_s"] for e in result["epochs"])
    print(f"done: train acc {last['train_acc']:.4f}, test acc {last['test_acc']:.4f}, "
          f"{total:.1f} s in {config.epochs} epoch(s), recurrent layer "
          f"{sum(e['recurrent_s'] for e in result['epochs']):.1f} s")
    if args.out:
        save_checkpoint(args.out, result["model"], corpus.vocab, config, result["epochs"])
        print(f"saved {args.out}")
    _write_json(args.json, {k: result[k] for k in ("config", "epochs", "step_losses", "world")})


def compare_table(runs):
    """Rows of the compare table, one per backend, plus the speed-ups."""
    lines = [f"{'backend':8} {'train acc':>9} {'test acc':>8} {'epoch s':>8} {'recurrent s':>11} "
             f"{'samples/s':>9}"]
    for backend, result in runs.items():
        e = result["epochs"]
        epoch_s = sum(x["epoch_s"] for x in e) / len(e)
        rec_s = sum(x["recurrent_s"] for x in e) / len(e)
        lines.append(f"{backend:8} {e[-1]['train_acc']:9.4f} {e[-1]['test_acc']:8.4f} "
                     f"{epoch_s:8.2f} {rec_s:11.2f} {e[-1]['samples_per_s']:9.0f}")
    return lines


def cmd_compare(args):
    corpus = _corpus(args)
    print(f"AG News: {len(corpus.train)} training rows, {len(corpus.test)} test rows, "
          f"vocabulary {len(corpus.vocab)}; model {args.model}, seed {args.seed}")
    runs = {}
    for backend in ("torch", "fastrnn"):
        runs[backend] = train(_config(args, backend), corpus, progress=not args.no_progress)
    if runs["fastrnn"]["rank"] != 0:
        return
    summary = speedups(runs)
    print("\n".join(compare_table(runs)))
    print(f"speed-up (torch / fastrnn): epoch {summary['epoch_speedup']:.2f}x, "
          f"recurrent layer {summary['recurrent_speedup']:.2f}x; max per-step loss difference "
          f"over the first {summary['steps_compared']} steps: {summary['max_step_loss_diff']:.2e}")
    if args.plot:
        plot(runs, args.plot)
        print(f"saved {args.plot}")
    _write_json(args.json, {"summary": summary, **{
        b: {k: r[k] for k in ("config", "epochs", "step_losses")} for b, r in runs.items()}})


def speedups(runs):
    t, f = runs["torch"], runs["fastrnn"]

    def total(result, key):
        return sum(e[key] for e in result["epochs"])

    steps = min(100, len(t["step_losses"]), len(f["step_losses"]))
    diffs = [abs(a - b) for a, b in zip(t["step_losses"][:steps], f["step_losses"][:steps])]
    return {"epoch_speedup": total(t, "epoch_s") / total(f, "epoch_s"),
            "recurrent_speedup": total(t, "recurrent_s") / max(total(f, "recurrent_s"), 1e-9),
            "test_acc_torch": t["epochs"][-1]["test_acc"],
            "test_acc_fastrnn": f["epochs"][-1]["test_acc"],
            "steps_compared": steps, "max_step_loss_diff": max(diffs, default=0.0)}


def plot(runs, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib")
    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for backend, result in runs.items():
        epochs = [e["epoch"] for e in result["epochs"]]
        acc_ax.plot(epochs, [e["test_acc"] for e in result["epochs"]], marker="o", label=backend)
        time_ax.plot(epochs, [e["epoch_s"] for e in result["epochs"]], marker="o", label=backend)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy", title="AG News test accuracy")
    time_ax.set(xlabel="epoch", ylabel="seconds", title="time per epoch")
    time_ax.set_ylim(bottom=0)
    for ax in (acc_ax, time_ax):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cmd_evaluate(args):
    model, vocab, config = load_checkpoint(args.checkpoint, args.backend, args.device)
    path = ensure_files(args.data_dir, ("test",), allow_download=not args.no_download,
                        progress=not args.no_progress)["test"]
    labels, texts = read_csv(path)
    rows = EncodedRows(texts, labels, vocab)  # encoded with the checkpoint's vocabulary
    result = evaluate(model, rows, config.batch_size, args.device)
    print(f"{config.model} ({config.backend}) on {path}: accuracy {result['accuracy']:.4f} "
          f"({len(rows)} rows)")
    width = max(len(c) for c in CLASSES)
    print("confusion (rows: true class, columns: predicted)")
    print(" " * width + "".join(f"{c:>10}" for c in CLASSES))
    for name, row in zip(CLASSES, result["confusion"]):
        print(f"{name:>{width}}" + "".join(f"{n:10d}" for n in row))
    _write_json(args.json, result)


def cmd_predict(args):
    model, vocab, _ = load_checkpoint(args.checkpoint, args.backend, args.device)
    for text in args.text:
        probs = predict(model, vocab, text, args.device)
        best = max(probs, key=probs.get)
        print(f"{best}  ({', '.join(f'{k} {v:.3f}' for k, v in probs.items())})  {text}")


def parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.agnews", description=(
        "The AG News topic classifier of the PyTorch RNN tutorial, on fastrnn or torch.nn."))
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model")
    _training_options(t)
    t.add_argument("--out", help="save a checkpoint (model, vocabulary, config) here")
    c = sub.add_parser("compare", help="train with both backends from one seed and compare")
    _training_options(c, backend=False)
    c.add_argument("--plot", metavar="PNG", help="plot accuracy and time per epoch (matplotlib)")
    for name, helptext in (("evaluate", "test accuracy and confusion matrix of a checkpoint"),
                           ("predict", "classify texts with a checkpoint")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("checkpoint")
        if name == "predict":
            s.add_argument("text", nargs="+")
        else:
            _data_options(s)
            s.add_argument("--json", metavar="FILE")
            s.add_argument("--no-progress", action="store_true")
        s.add_argument("--backend", choices=BACKENDS, default=None,
                       help="override the checkpoint's backend")
        s.add_argument("--device", default="cpu")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    commands = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate,
                "predict": cmd_predict}
    try:
        commands[args.command](args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun: leave together, after rank 0 has saved
        dist.barrier()
        dist.destroy_process_group()
    return 0
