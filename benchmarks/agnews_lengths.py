"""Sequence lengths of real AG News rows (basic_english tokens of title + description)."""
import os

import torch

from fastrnn.agnews.data import read_csv
from fastrnn.agnews.text import basic_english

DEFAULT_CSV = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ag_news",
                           "test.csv")
# The same lengths as a histogram, committed for machines without the data set.
HISTOGRAM = os.path.join(os.path.dirname(__file__), "agnews_test_lengths.json")


def agnews_lengths(path=DEFAULT_CSV):
    """Token counts of every row of an AG News CSV, as an int64 tensor, or None if absent."""
    if not os.path.exists(path):
        return None
    _, texts = read_csv(path)
    return torch.tensor([len(basic_english(text)) for text in texts])


def length_population():
    """(lengths of every AG News test row, where they came from): the CSV if present,
    else the committed histogram of the same rows, else (None, 'normal fit')."""
    lengths = agnews_lengths(DEFAULT_CSV)
    if lengths is not None:
        return lengths, os.path.normpath(DEFAULT_CSV)
    if os.path.exists(HISTOGRAM):
        import json

        with open(HISTOGRAM) as f:
            counts = json.load(f)["counts"]
        lengths = [int(n) for n, rows in counts.items() for _ in range(rows)]
        return torch.tensor(lengths), os.path.basename(HISTOGRAM)
    return None, "normal fit of AG News lengths (no data found)"


def sample_lengths(batch, population, generator):
    """`batch` lengths drawn from the population (or, without data, from a normal
    fit of AG News: mean 43, 5th/95th percentiles 26/64)."""
    if population is None:
        lengths = torch.normal(43.0, 11.5, (batch,), generator=generator).round().clamp(5, 150)
        return lengths.to(torch.int64)
    index = torch.randint(0, population.numel(), (batch,), generator=generator)
    return population[index]
