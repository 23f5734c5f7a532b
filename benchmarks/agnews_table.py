"""Markdown table of `python -m fastrnn.agnews compare --json` results.

    python benchmarks/agnews_table.py benchmarks/results/agnews/mini-*.json
"""
import json
import sys


def row(path):
    report = json.load(open(path))
    summary, torch_run, fast_run = report["summary"], report["torch"], report["fastrnn"]
    epochs = len(fast_run["epochs"])

    def mean(run, key):
        return sum(e[key] for e in run["epochs"]) / len(run["epochs"])

    config = fast_run["config"]
    name = config["model"] + (" --sparse-embedding" if config.get("sparse_embedding") else "")
    return (f"| {name} | {config['seed']} | {epochs} "
            f"| {summary['test_acc_torch']:.4f} | {summary['test_acc_fastrnn']:.4f} "
            f"| {100 * abs(summary['test_acc_torch'] - summary['test_acc_fastrnn']):.2f} "
            f"| {summary['max_step_loss_diff']:.1e} "
            f"| {mean(torch_run, 'epoch_s'):.2f} | {mean(fast_run, 'epoch_s'):.2f} "
            f"| {summary['epoch_speedup']:.2f}x "
            f"| {mean(torch_run, 'recurrent_s'):.2f} | {mean(fast_run, 'recurrent_s'):.2f} "
            f"| {summary['recurrent_speedup']:.2f}x |")


def main(paths):
    print("| model | seed | epochs | test acc torch | test acc fastrnn | diff (points) "
          "| max step-loss diff (first 100) | epoch s torch | epoch s fastrnn | epoch speed-up "
          "| recurrent s torch | recurrent s fastrnn | recurrent speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    def key(path):
        config = json.load(open(path))["fastrnn"]["config"]
        return config["model"], bool(config.get("sparse_embedding")), config["seed"]

    for path in sorted(paths, key=key):
        print(row(path))


if __name__ == "__main__":
    main(sys.argv[1:])
