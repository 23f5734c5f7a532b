"""Bytes that autograd keeps for backward, per token: fastrnn vs torch.nn on a packed batch.

    python benchmarks/saved_memory.py [--json benchmarks/results/saved-memory.json]

A torch.autograd.graph.saved_tensors_hooks pack hook sees every tensor that the forward
pass saves for backward; the bytes of the distinct storages behind them are summed:
- total: everything saved;
- activations: without the storages that exist anyway (the module's parameters and the
  input PackedSequence's data, batch_sizes and indices): what training adds per batch.
Divided by the number of (packed) tokens. The input requires grad (as it does behind an
embedding). Lengths are drawn from AG News rows (benchmarks/agnews_lengths.py).
Configurations: LSTM, GRU and RNN (tanh); one layer one direction ("1x1") and two layers
bidirectional ("2x2"); batch 16, input 64, hidden 32 (the AG News tutorial shape) and 512.
"""
import argparse
import json
import os
import platform
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastrnn  # noqa: E402
import fastrnn.info  # noqa: E402
from tables import saved_memory_table  # noqa: E402

CLASSES = {"lstm": (torch.nn.LSTM, fastrnn.LSTM), "gru": (torch.nn.GRU, fastrnn.GRU),
           "rnn_tanh": (torch.nn.RNN, fastrnn.RNN)}
SHAPES = {"agnews": dict(batch=16, input_size=64, hidden_size=32),
          "hidden512": dict(batch=16, input_size=64, hidden_size=512)}
LAYOUTS = {"1x1": dict(num_layers=1, bidirectional=False),
           "2x2": dict(num_layers=2, bidirectional=True)}


def lengths_for(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    try:
        from agnews_lengths import length_population, sample_lengths
        return sample_lengths(batch, length_population()[0], gen)
    except Exception:  # noqa: BLE001 - no data: lengths like AG News's (mean ~43)
        return torch.normal(43.0, 11.5, (batch,), generator=gen).round().clamp(5, 150).long()


def saved_bytes(module, packed):
    """(total, activations) bytes of the distinct storages saved for backward."""
    storages = {}

    def pack_hook(t):
        s = t.untyped_storage()
        storages[(t.device, s.data_ptr())] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        output, _ = module(packed)
    total = sum(storages.values())
    existing = list(module.parameters()) + [t for t in packed if t is not None]
    exclude = {(t.device, t.untyped_storage().data_ptr()) for t in existing}
    activations = sum(n for key, n in storages.items() if key not in exclude)
    return total, activations


def measure(cell, shape, layout, seed=0, proj_size=0):
    cfg = SHAPES[shape]
    ref_cls, fast_cls = CLASSES[cell]
    torch.manual_seed(seed)
    extra = dict(proj_size=proj_size) if proj_size else {}
    ref = ref_cls(cfg["input_size"], cfg["hidden_size"], **LAYOUTS[layout], **extra)
    ours = fast_cls(cfg["input_size"], cfg["hidden_size"], **LAYOUTS[layout], **extra)
    ours.load_state_dict(ref.state_dict())
    lengths = lengths_for(cfg["batch"], seed)
    x = torch.randn(int(lengths.max()), cfg["batch"], cfg["input_size"], requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    tokens = packed.data.shape[0]
    bias_bytes = sum(p.nbytes for n, p in ours.named_parameters() if n.startswith("bias"))
    row = dict(cell=cell, shape=shape, layout=layout, tokens=tokens, steps=int(lengths.max()),
               bias_bytes=bias_bytes, proj_size=proj_size)
    for name, module in (("torch", ref), ("fastrnn", ours)):
        total, activations = saved_bytes(module, packed)
        row[f"{name}_total_per_token"] = total / tokens
        row[f"{name}_activations_per_token"] = activations / tokens
    return row


def run(shapes=tuple(SHAPES), layouts=tuple(LAYOUTS), cells=tuple(CLASSES)):
    return [measure(cell, shape, layout) for shape in shapes for layout in layouts
            for cell in cells]


def run_proj():
    """LSTM with proj_size = hidden/4, one layer: fastrnn keeps the hidden-wide state m and
    the 4H x H product weight W_hh @ W_hr (see README), so at large hidden/proj it keeps
    more than torch.nn."""
    return [measure("lstm", shape, "1x1", proj_size=SHAPES[shape]["hidden_size"] // 4)
            for shape in SHAPES]


def print_table(rows):
    print("bytes saved for backward per token (float32, packed input)")
    print(saved_memory_table(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows, proj_rows = run(), run_proj()
    print(f"machine: {fastrnn.info.cpu_name()}, torch {torch.__version__}")
    print_table(rows)
    print("LSTM with proj_size = hidden_size / 4:")
    print_table(proj_rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(torch=torch.__version__, python=platform.python_version(),
                           machine=fastrnn.info.cpu_name(),
                           date=time.strftime("%Y-%m-%d"), rows=rows, proj_rows=proj_rows),
                      f, indent=1)


if __name__ == "__main__":
    main()
