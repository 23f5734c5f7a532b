"""Markdown tables of the committed benchmark results (pure functions of their JSON, no torch).

One home for each table's format: the benchmarks print their rows with these, and
benchmarks/docs_tables.py writes the tables into docs/ from benchmarks/results/.
"""
from typing import Iterable, List

CPU_SPEED_HEADER = ("| shape | cell | level | pass | fastrnn packed | fastrnn padded | torch packed "
                    "| torch padded | vs torch packed | vs torch padded |\n" + "|---" * 4
                    + "|---:" * 6 + "|")

SAVED_MEMORY_HEADER = ("| shape | layers x dirs | cell | tokens | torch.nn total | fastrnn total "
                       "| torch.nn activations | fastrnn activations | ratio |\n"
                       + "|---" * 3 + "|---:" * 6 + "|")

AGNEWS_HEADER = ("| model | seed | epochs | test acc torch | test acc fastrnn | diff (points) "
                 "| max step-loss diff (first 100) | epoch s torch | epoch s fastrnn "
                 "| epoch speed-up | recurrent s torch | recurrent s fastrnn "
                 "| recurrent speed-up |\n|---" + "|---:" * 12 + "|")


def cpu_speed_row(row: dict) -> str:
    return (f"| {row['shape']} | {row['cell']} | {row['level']} | {row['pass_']} "
            f"| {row['fastrnn_packed_ms']:.3f} | {row['fastrnn_padded_ms']:.3f} "
            f"| {row['torch_packed_ms']:.3f} | {row['torch_padded_ms']:.3f} "
            f"| {row['speedup_vs_torch_packed']:.1f}x | {row['speedup_vs_torch_padded']:.2f}x |")


def machine_line(machine: dict) -> str:
    built = f", fastrnn built with {machine['simd']}" if machine.get("simd") else ""
    date = f", {machine['date']}" if machine.get("date") else ""
    return (f"Measured on: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} torch "
            f"threads on both sides, torch {machine['torch']}, Python {machine['python']}"
            f"{date}{built}.")


def cpu_speed_table(report: dict, **only) -> str:
    """The rows of a bench_cpu.py report, those matching ``only`` (e.g. shape="agnews")."""
    rows = [cpu_speed_row(r) for r in report["results"]
            if all(r[key] == value for key, value in only.items())]
    return "\n".join([machine_line(report["machine"]) + " Times in ms (medians).", "",
                      CPU_SPEED_HEADER, *rows])


def saved_memory_row(r: dict) -> str:
    ratio = r["fastrnn_activations_per_token"] / r["torch_activations_per_token"]
    return (f"| {r['shape']} | {r['layout']} | {r['cell']} | {r['tokens']} "
            f"| {r['torch_total_per_token']:.0f} | {r['fastrnn_total_per_token']:.0f} "
            f"| {r['torch_activations_per_token']:.0f} "
            f"| {r['fastrnn_activations_per_token']:.0f} | {ratio:.2f} |")


def saved_memory_table(rows: Iterable[dict]) -> str:
    return "\n".join([SAVED_MEMORY_HEADER, *(saved_memory_row(r) for r in rows)])


def agnews_row(report: dict) -> str:
    summary, torch_run, fast_run = report["summary"], report["torch"], report["fastrnn"]

    def mean(run, key):
        return sum(e[key] for e in run["epochs"]) / len(run["epochs"])

    config = fast_run["config"]
    name = config["model"] + (" --sparse-embedding" if config.get("sparse_embedding") else "")
    return (f"| {name} | {config['seed']} | {len(fast_run['epochs'])} "
            f"| {summary['test_acc_torch']:.4f} | {summary['test_acc_fastrnn']:.4f} "
            f"| {100 * abs(summary['test_acc_torch'] - summary['test_acc_fastrnn']):.2f} "
            f"| {summary['max_step_loss_diff']:.1e} "
            f"| {mean(torch_run, 'epoch_s'):.2f} | {mean(fast_run, 'epoch_s'):.2f} "
            f"| {summary['epoch_speedup']:.2f}x "
            f"| {mean(torch_run, 'recurrent_s'):.2f} | {mean(fast_run, 'recurrent_s'):.2f} "
            f"| {summary['recurrent_speedup']:.2f}x |")


def agnews_table(reports: List[dict]) -> str:
    def key(report):
        config = report["fastrnn"]["config"]
        return config["model"], bool(config.get("sparse_embedding")), config["seed"]

    return "\n".join([AGNEWS_HEADER, *(agnews_row(r) for r in sorted(reports, key=key))])


MODULE_STEP_HEADER = ("| shape | case | pass | torch layout | fastrnn ms | torch ms | speed-up "
                      "| runs' range | target |\n|---|---|---|---|---:|---:|---:|---|---|")


def module_step_row(row: dict) -> str:
    target = "" if row["target"] is None else (
        f"{row['target']}x {'met' if row['met'] else 'NOT met'}")
    spread = (f"{row['speedup_low']:.2f}-{row['speedup_high']:.2f}x ({row['repeats']} runs)"
              if row.get("repeats", 1) > 1 else "")
    return (f"| {row['shape']} | {row['case']} | {row['pass_']} | {row['torch_layout']} "
            f"| {row['fastrnn_ms']:.3f} | {row['torch_ms']:.3f} | {row['speedup']:.2f}x "
            f"| {spread} | {target} |")


def module_step_table(*reports: dict) -> str:
    """bench_module_cpu.py reports (e.g. the AG News and the large shape), one table."""
    lines = []
    for report in reports:
        machine = report["machine"]
        load = machine.get("load_avg_start")
        shapes = sorted({row["shape"] for row in report["results"]})
        lines.append(f"{', '.join(shapes)}: " + machine_line(machine)
                     + (f" Load average at start {load[0]:.1f}." if load else ""))
    lines += ["", MODULE_STEP_HEADER]
    lines += [module_step_row(row) for report in reports for row in report["results"]]
    return "\n".join(lines)


BEYOND_NN_HEADER = ("| case | baseline | fastrnn ms | baseline ms | speed-up | target |\n"
                    "|---|---|---:|---:|---:|---|")


def beyond_nn_row(row: dict) -> str:
    target = (f">= {row['target']:.2f}x {'met' if row['met'] else 'NOT met'}"
              + (" (time <= 1.5x)" if row["baseline"] == "fastrnn.LSTM" else ""))
    return (f"| {row['case']} | {row['baseline']} | {row['fastrnn_ms']:.2f} "
            f"| {row['baseline_ms']:.2f} | {row['speedup']:.2f}x | {target} |")


def beyond_nn_table(report: dict) -> str:
    """bench_beyond_nn.py's report."""
    machine = report["machine"]
    load = machine.get("load_avg_start")
    return "\n".join([machine_line(machine) + (f" Load average at start {load[0]:.1f}."
                                               if load else ""), "", BEYOND_NN_HEADER,
                      *(beyond_nn_row(row) for row in report["results"])])


AGNEWS_TRAIN_HEADER = ("| model | options | seed | epochs | train acc | test acc | epoch s "
                       "| recurrent s |\n|---|---|---:|---:|---:|---:|---:|---:|")


def agnews_train_row(report: dict) -> str:
    """One `python -m fastrnn.agnews train --json` result (fastrnn backend)."""
    config, epochs = report["config"], report["epochs"]
    options = " ".join(f"--{name.replace('_', '-')} {config[name]}"
                       for name in ("weight_drop", "zoneout") if config.get(name))
    mean = lambda key: sum(e[key] for e in epochs) / len(epochs)  # noqa: E731
    return (f"| {config['model']} | {options or '-'} | {config['seed']} | {len(epochs)} "
            f"| {epochs[-1]['train_acc']:.4f} | {epochs[-1]['test_acc']:.4f} "
            f"| {mean('epoch_s'):.2f} | {mean('recurrent_s'):.2f} |")


def agnews_train_table(reports: List[dict]) -> str:
    env = reports[0]["environment"] if reports else {}
    head = (f"Measured {env.get('date')}, {env.get('cpu')}, {env.get('cores')} cores, "
            f"{env.get('torch_threads')} torch threads, torch {env.get('torch')}.\n\n"
            if env else "")
    return head + "\n".join([AGNEWS_TRAIN_HEADER, *(agnews_train_row(r) for r in reports)])
