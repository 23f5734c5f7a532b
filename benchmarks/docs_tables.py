"""Writes the measured tables into README.md and docs/ from the committed results in benchmarks/results/.

    python benchmarks/docs_tables.py          # rewrite the generated blocks
    python benchmarks/docs_tables.py --check  # exit 1 if a doc is out of date (a test runs it)

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``;
NAME picks the table below. Tables are never pasted by hand.
"""
import argparse
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import (agnews_table, agnews_train_table, beyond_nn_table,  # noqa: E402
                    cpu_speed_table, module_step_table, saved_memory_table)

AGNEWS_FWD_BWD = dict(shape="agnews", pass_="forward+backward")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _load(name):
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def _saved(key):
    report = _load("saved-memory-cpu-2core-torch2.13.json")
    return (f"Measured {report['date']}, torch {report['torch']}, {report['machine']}.\n\n"
            + saved_memory_table(report[key]))


TABLES = {
    "cpu-speed": lambda: cpu_speed_table(_load("cpu-2core-torch2.13.json")),
    "cpu-speed-summary": lambda: cpu_speed_table(_load("cpu-2core-torch2.13.json"),
                                                 **AGNEWS_FWD_BWD),
    "module-step": lambda: module_step_table(_load("module-cpu-2core-torch2.13.json"),
                                             _load("module-cpu-2core-torch2.13-large.json")),
    "module-step-fastrnn-pack": lambda: module_step_table(
        _load("module-cpu-2core-torch2.13-fastrnn-pack.json")),
    "saved-memory": lambda: _saved("rows"),
    "saved-memory-proj": lambda: _saved("proj_rows"),
    "agnews": lambda: agnews_table([json.load(open(p)) for p in
                                    sorted(glob.glob(os.path.join(RESULTS, "agnews", "*.json")))]),
    "agnews-beyond": lambda: agnews_train_table(
        [json.load(open(p)) for p in
         sorted(glob.glob(os.path.join(RESULTS, "agnews-beyond", "*.json")))]),
    "beyond-nn": lambda: beyond_nn_table(_load("beyond-nn-cpu-2core-torch2.13.json")),
}


def render(text: str) -> str:
    def fill(match):
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"docs_tables: unknown generated block '{name}' "
                             f"(known: {', '.join(TABLES)})")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    docs = [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "*.md"))]
    for path in sorted(docs):
        with open(path) as f:
            text = f.read()
        new = render(text)
        if new != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path, "w") as f:
                    f.write(new)
    if args.check and stale:
        print("out of date (run python benchmarks/docs_tables.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
