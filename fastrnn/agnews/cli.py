"""``python -m fastrnn.agnews {train,compare,evaluate,predict}`` (console script: fastrnn-agnews).

Everything typed is checked before any data is read: numbers, the device (it
must exist on this machine), paths that must exist, output paths, matplotlib for
``--plot``. Every foreseeable failure (bad arguments, missing or malformed data,
a bad checkpoint) ends in ``error: ...`` on stderr and exit status 2, without a
traceback; Ctrl-C exits with 130.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile

import torch

from .data import (CLASSES, DIR_ENV, DataError, cache_data_dir, check_data_dir, ensure_files,
                   read_csv)
from .models import BACKENDS, FASTRNN_ONLY_MODES, MODELS
from .text import basic_english
from .training import (CheckpointError, EncodedRows, TrainConfig, evaluate, load_checkpoint,
                       load_corpus, predict, save_checkpoint, train)

ERRORS = (DataError, CheckpointError)

# ---------------------------------------------------------------- argument types
# Each raises ArgumentTypeError, which argparse turns into
# "usage: ... error: argument --name: <message>" and exit status 2.


# Sizes beyond this are no AG News model or batch (and past int32 torch's sizes overflow).
SIZE_MAX = 2 ** 31 - 1


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {value}")
    if value > SIZE_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number up to {SIZE_MAX}, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value


def probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


SEED_MAX = 2 ** 32 - 1


def seed(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number in 0..{SEED_MAX}, got {text!r}")
    return value


def available_devices():
    """The devices this machine's torch can run on, as --device spells them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += ["xpu"] + [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def device(text):
    """A device that exists here (checked before any data is read)."""
    here = ", ".join(available_devices())
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; use one of: {here} (the devices available here)")
    kind, index = parsed.type, parsed.index
    if kind == "cpu":
        return text
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "torch finds no CUDA GPU (driver, CUDA_VISIBLE_DEVICES?)")
            raise argparse.ArgumentTypeError(
                f"{text!r}: CUDA is not available here ({why}, torch {torch.__version__}); "
                f"devices here: {here}")
        if index is not None and index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"devices here: {here}")
        return text
    if kind in ("mps", "xpu"):
        if text in available_devices() or (index is None and kind in available_devices()):
            return text
        raise argparse.ArgumentTypeError(f"{text!r}: {kind.upper()} is not available here "
                                         f"(torch {torch.__version__} finds no {kind} device); "
                                         f"devices here: {here}")
    raise argparse.ArgumentTypeError(f"{text!r}: {kind} devices are not supported; use one of: "
                                     f"{here} (the devices available here)")


def data_dir(text):
    """An existing folder (a folder the user names is never created)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path; give the folder that holds train.csv and "
                                         "test.csv")
    try:
        return check_data_dir(text, "")
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error).strip())


def checkpoint(text):
    if not text:
        raise argparse.ArgumentTypeError("empty path; give a checkpoint written by train --out")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give a checkpoint file written by train --out")
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(
            f"{text}: no such file; give a checkpoint written by train --out")
    return text


def output_file(text):
    """A path a file can be written to: not a folder, and no file in the way of
    its folder (missing folders are created when it is written)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {parent} is not writable")
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(folder):
        # Try it (access() says yes to root, and knows nothing of /proc or full disks), so
        # the run fails now rather than after training: the file itself when it exists (opened
        # to append, unchanged), else a file of its own in the folder (the target's name may be
        # checked by several processes at once, under torchrun).
        try:
            if os.path.exists(text):
                with open(text, "ab"):
                    pass
            else:
                fd, probe = tempfile.mkstemp(prefix=".fastrnn-write-check-", dir=folder)
                os.close(fd)
                os.remove(probe)
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot write {text}: {error.strerror or error}")
    return text


def plot_file(text):
    """--plot: an output path, matplotlib importable, a format it writes."""
    if not os.path.splitext(text)[1]:
        text += ".png"  # what matplotlib would write; the messages then name the real file
    text = output_file(text)
    try:
        import matplotlib
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise argparse.ArgumentTypeError("needs matplotlib, which is not installed: "
                                         "pip install matplotlib (or leave --plot out)")
    extension = os.path.splitext(text)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if extension and extension not in formats:
        raise argparse.ArgumentTypeError(
            f"{text}: matplotlib {matplotlib.__version__} cannot write .{extension} files; "
            f"use one of: {', '.join(sorted(formats))}")
    return text


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows defaults, except where there is none (None, or an off flag)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.help is None:
            return action.help
        return super()._get_help_string(action)


# ---------------------------------------------------------------- options


def _training_options(parser, backend=True):
    d = TrainConfig()
    parser.add_argument("--model", choices=list(MODELS), default=d.model,
                        help="the classifier (see fastrnn.agnews.models)")
    if backend:
        parser.add_argument("--backend", choices=BACKENDS, default=d.backend,
                            help="recurrent layer: fastrnn's or torch.nn's")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                        help="global batch size (split across processes under torchrun)")
    parser.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate")
    parser.add_argument("--embed-dim", type=positive_int, default=d.embed_dim,
                        help="embedding size")
    parser.add_argument("--hidden-dim", type=positive_int, default=d.hidden_dim,
                        help="recurrent hidden size")
    parser.add_argument("--min-freq", type=positive_int, default=d.min_freq,
                        help="drop training tokens seen fewer times (they become <unk>)")
    _device_option(parser, d.device)
    parser.add_argument("--seed", type=seed, default=d.seed,
                        help="initial weights and batch order (the same on both backends)")
    parser.add_argument("--bucket", action="store_true",
                        help="batch rows of similar length together (less padding)")
    parser.add_argument("--sparse-embedding", action="store_true",
                        help="sparse embedding gradients with SparseAdam for the table (lazy Adam: "
                             "faster on large vocabularies, not the tutorial's exact update)")
    parser.add_argument("--weight-drop", type=probability, default=d.weight_drop, metavar="P",
                        help="DropConnect on the recurrent weights (fastrnn only)")
    parser.add_argument("--zoneout", type=probability, default=d.zoneout, metavar="P",
                        help="zoneout of the recurrent state (fastrnn only)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="use the first N training rows (default: all)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch.set_num_threads (default: torch's choice)")
    _data_options(parser)
    parser.add_argument("--json", metavar="FILE", type=output_file,
                        help="write the metrics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device_option(parser, default):
    here = ", ".join(available_devices())
    parser.add_argument("--device", type=device, default=default,
                        help=f"cpu, cuda, cuda:N, mps, xpu (available here: {here})")


def _data_options(parser, recorded=False):
    where = f"${DIR_ENV} if set, else {cache_data_dir()}"
    default = ("the folder recorded in the checkpoint, else " if recorded else "") + where
    parser.add_argument("--data-dir", type=data_dir, default=None, metavar="FOLDER",
                        help=f"existing folder with train.csv/test.csv (default: {default}; "
                             f"only the default folder is created, for the download)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing files")


def _config(args, backend=None) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if backend is not None:
        values["backend"] = backend
    return TrainConfig(**values)


def _corpus(args, with_test=True):
    corpus = load_corpus(args.data_dir, getattr(args, "limit", None), getattr(args, "min_freq", 1),
                         with_test=with_test, allow_download=not args.no_download,
                         progress=not getattr(args, "no_progress", False))
    if len(corpus.vocab) <= 2:
        print(f"warning: --min-freq {args.min_freq} keeps no token of the {len(corpus.train)} "
              f"training rows: every token is <unk>", file=sys.stderr)
    return corpus


def load_average() -> str:
    """The 1-minute load average, or "unknown"."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        return "unknown"


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
            "torch_threads": torch.get_num_threads(), "load_average": load_average()}


class OutputError(Exception):
    """A result could not be written (after the work was done)."""


def _writing(path, write):
    """Run ``write`` (which writes ``path``), creating the folder first; OSError
    becomes OutputError naming the file."""
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        write()
    except (OSError, RuntimeError) as error:  # torch.save raises RuntimeError
        raise OutputError(f"cannot write {path}: {getattr(error, 'strerror', None) or error}") \
            from error


def _write_json(path, payload):
    if path:
        def write():
            with open(path, "w") as f:
                json.dump({**payload, "environment": environment()}, f, indent=2)

        _writing(path, write)


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
        # the checkpoint records the data folder absolute, for evaluate from anywhere
        recorded = dataclasses.replace(
            config, data_dir=config.data_dir and os.path.abspath(config.data_dir))
        _writing(args.out, lambda: save_checkpoint(args.out, result["model"], corpus.vocab,
                                                   recorded, result["epochs"]))
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
    print(f"{torch.get_num_threads()} torch thread(s), load average {load_average()} on "
          f"{os.cpu_count()} cores (a busy machine slows both; --threads 1 can win there)")
    print("\n".join(compare_table(runs)))
    print(f"speed-up (torch / fastrnn): epoch {summary['epoch_speedup']:.2f}x, "
          f"recurrent layer {summary['recurrent_speedup']:.2f}x; max per-step loss difference "
          f"over the first {summary['steps_compared']} steps: {summary['max_step_loss_diff']:.2e}")
    if args.plot:
        _writing(args.plot, lambda: plot(runs, args.plot))
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
    except ImportError:  # checked when the arguments are parsed (plot_file)
        raise OutputError("--plot needs matplotlib: pip install matplotlib")
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


def _evaluation_folder(args, config):
    """(folder, why) of the test split for evaluate: --data-dir, else the folder
    recorded in the checkpoint, else $FASTRNN_AG_NEWS_DIR / the cache folder."""
    if args.data_dir:
        return args.data_dir, "--data-dir"
    if config.data_dir:
        if not os.path.isdir(config.data_dir):
            raise DataError(f"{args.checkpoint} was trained on {config.data_dir}, which is not a "
                            f"folder here; give the folder with test.csv as --data-dir")
        return config.data_dir, "the folder recorded in the checkpoint; --data-dir overrides"
    if os.environ.get(DIR_ENV):  # a folder the user names must exist (never created)
        return check_data_dir(os.environ[DIR_ENV], f"${DIR_ENV}"), f"${DIR_ENV}"
    return None, "the default folder: the checkpoint records none"


def cmd_evaluate(args):
    model, vocab, config = load_checkpoint(args.checkpoint, args.backend, args.device)
    folder, why = _evaluation_folder(args, config)
    path = ensure_files(folder, ("test",), allow_download=not args.no_download,
                        progress=not args.no_progress)["test"]
    print(f"test split from {os.path.dirname(path)} ({why})")
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
        if not any(token in vocab for token in basic_english(text)):
            print(f"warning: no word of {text!r} is in the checkpoint's vocabulary of "
                  f"{len(vocab)} tokens: every token is <unk>, so the class below says "
                  f"nothing about this text", file=sys.stderr)
        probs = predict(model, vocab, text, args.device)
        best = max(probs, key=probs.get)
        print(f"{best}  ({', '.join(f'{k} {v:.3f}' for k, v in probs.items())})  {text}")


def parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.agnews", formatter_class=HelpFormatter,
                                description=("The AG News topic classifier of the PyTorch RNN "
                                             "tutorial, on fastrnn or torch.nn."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="train, compare, evaluate or predict (COMMAND --help for more)")
    t = sub.add_parser("train", help="train a model", formatter_class=HelpFormatter,
                       description="Train one model on AG News's train.csv, testing on test.csv "
                                   "after each epoch.")
    _training_options(t)
    t.add_argument("--out", type=output_file, metavar="FILE",
                   help="save a checkpoint (model, vocabulary, config) here")
    c = sub.add_parser("compare", help="train with both backends from one seed and compare",
                       formatter_class=HelpFormatter,
                       description="Train the same model with torch.nn and fastrnn from one "
                                   "seed and compare accuracy, time and per-step losses.")
    _training_options(c, backend=False)
    c.add_argument("--plot", metavar="PNG", type=plot_file,
                   help="plot accuracy and time per epoch (needs matplotlib)")
    for name, helptext in (("evaluate", "test accuracy and confusion matrix of a checkpoint"),
                           ("predict", "classify texts with a checkpoint")):
        s = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:]
                           + ".", formatter_class=HelpFormatter)
        s.add_argument("checkpoint", type=checkpoint, help="a file written by train --out")
        if name == "predict":
            s.add_argument("text", nargs="+", help="headline(s) or short news text(s)")
        else:
            _data_options(s, recorded=True)
            s.add_argument("--json", metavar="FILE", type=output_file,
                           help="write accuracy and confusion matrix as JSON")
            s.add_argument("--no-progress", action="store_true", help="no download progress bar")
        s.add_argument("--backend", choices=BACKENDS, default=None,
                       help="override the checkpoint's backend (default: the checkpoint's)")
        _device_option(s, "cpu")
    return p


def _check(args, fail):
    """What argparse's per-argument types cannot see; ``fail`` is the
    subcommand parser's error (usage, message, exit 2)."""
    if args.command == "predict":
        for i, text in enumerate(args.text, 1):
            label = f"text {i}" if len(args.text) > 1 else "text"
            if not text.strip():
                fail(f"argument text: {label} is empty; give a headline to classify")
            if not basic_english(text):
                fail(f"argument text: {label} {text!r} has no words (the tokenizer drops "
                     f"double quotes, ';' and ':'); give a headline to classify")
    if args.command in ("train", "compare"):
        backend = getattr(args, "backend", "torch")  # compare trains torch.nn too
        beyond = [f"--{name.replace('_', '-')}" for name in ("weight_drop", "zoneout")
                  if getattr(args, name)]
        if MODELS[args.model][0] in FASTRNN_ONLY_MODES and backend != "fastrnn":
            fail(f"argument --model: {args.model} has no torch.nn version; it trains with "
                 f"`train --backend fastrnn` only")
        if beyond and backend != "fastrnn":
            fail(f"argument {beyond[0]}: torch.nn has no such option; it trains with "
                 f"`train --backend fastrnn` only")
        world = os.environ.get("WORLD_SIZE", "1")
        world = int(world) if world.isdigit() and int(world) > 0 else 1
        if args.batch_size % world:
            fail(f"argument --batch-size: {args.batch_size} is the global batch and must be "
                 f"divisible by the number of processes ({world})")
        if args.sparse_embedding and world > 1:
            fail("argument --sparse-embedding: runs in one process only (DDP would all-reduce "
                 "sparse gradients, which nccl does not support)")


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "allocate" in str(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    subparsers = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    _check(args, subparsers.choices[args.command].error)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    commands = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate,
                "predict": cmd_predict}
    code = 0
    try:
        training = args.command in ("train", "compare")
        if training and args.data_dir is None and os.environ.get(DIR_ENV):
            # a folder the user names must exist; it is recorded in the checkpoint
            args.data_dir = check_data_dir(os.environ[DIR_ENV], f"${DIR_ENV}")
        commands[args.command](args)
    except (*ERRORS, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        print(f"error: not enough memory for this model and batch ({_first_line(error)}); "
              f"try a smaller --hidden-dim, --embed-dim or --batch-size", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun: leave together, after rank 0 has saved
        dist.barrier()
        dist.destroy_process_group()
    return code
