"""Text to token ids: torchtext's ``basic_english`` tokenizer and a vocabulary.

torchtext is not a dependency (its last release does not load with current
torch), so both are reimplemented here and tested against basic_english's
documented rules.
"""
import re
from collections import Counter
from typing import Dict, Iterable, List, Sequence

PAD, UNK = "<pad>", "<unk>"

# torchtext.data.utils._basic_english_normalize, rule for rule and in its order.
_BASIC_ENGLISH_RULES = [(re.compile(pattern), replacement) for pattern, replacement in [
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
    (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "),
    (r"\:", " "), (r"\s+", " "),
]]


def basic_english(line: str) -> List[str]:
    """Lowercase; spaces around ' . , ( ) ! ?; drop double quotes; ``;`` and ``:``
    become spaces; ``<br />`` is removed; split on whitespace."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


class Vocab:
    """Token <-> id map. Ids 0 and 1 are ``<pad>`` and ``<unk>``; then tokens by
    descending frequency, ties in lexicographic order (torchtext's order)."""

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        self.itos: List[str] = list(tokens)
        self.stoi: Dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        self.pad_id, self.unk_id = 0, 1

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], min_freq: int = 1) -> "Vocab":
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK] + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> List[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def state_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Vocab":
        return cls(state["itos"])
