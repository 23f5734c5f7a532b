"""Sequence lengths of real AG News rows (basic_english tokens of title + description)."""
import csv
import os
import re

import torch

DEFAULT_CSV = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ag_news",
                           "test.csv")

# torchtext's basic_english normalisation.
_RULES = [(re.compile(p), r) for p, r in [
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
    (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "),
    (r"\:", " "), (r"\s+", " "),
]]


def basic_english(line):
    line = line.lower()
    for pattern, replacement in _RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def agnews_lengths(path=DEFAULT_CSV):
    """Token counts of every row of an AG News CSV, as an int64 tensor, or None if absent."""
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return torch.tensor([len(basic_english(title + " " + text)) for _, title, text in rows])


def sample_lengths(batch, population, generator):
    """`batch` lengths drawn from the population (or, without data, from a normal
    fit of AG News: mean 43, 5th/95th percentiles 26/64)."""
    if population is None:
        lengths = torch.normal(43.0, 11.5, (batch,), generator=generator).round().clamp(5, 150)
        return lengths.to(torch.int64)
    index = torch.randint(0, population.numel(), (batch,), generator=generator)
    return population[index]
