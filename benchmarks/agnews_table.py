"""Markdown table of `python -m fastrnn.agnews compare --json` results.

    python benchmarks/agnews_table.py benchmarks/results/agnews/mini-*.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import agnews_table  # noqa: E402

if __name__ == "__main__":
    print(agnews_table([json.load(open(path)) for path in sys.argv[1:]]))
