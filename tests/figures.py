"""Counters that the fuzz tests bump, printed at the end of a pytest run.

``differential``: random configurations compared with torch.nn (outputs, states, gradients);
``bad_inputs``: malformed calls tried on the ops and modules.
With FASTRNN_FIGURES=path, the counts are also appended to that file as one JSON line per
pytest run (.ci/run sums them for its final summary).
"""
import json
import os

COUNTS = {"differential": 0, "bad_inputs": 0}


def count(name, n=1):
    COUNTS[name] += n


def summary():
    if not any(COUNTS.values()):
        return ""
    return (f"differential cases compared with torch.nn: {COUNTS['differential']}, "
            f"bad inputs tried: {COUNTS['bad_inputs']}")


def dump():
    path = os.environ.get("FASTRNN_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(COUNTS) + "\n")
