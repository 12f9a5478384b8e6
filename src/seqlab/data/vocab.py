"""A word vocabulary that is plain data (a list of tokens), so checkpoints store it without pickling."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

UNK = "<unk>"
EOS = "<eos>"  # a sentence's end: PTB's line breaks, and where sampled text breaks lines


class Vocabulary:
    """Token <-> id. Unknown tokens map to `<unk>`, which is always present."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate tokens")
        if UNK not in self.stoi:
            raise ValueError(f"vocabulary lacks {UNK}")
        self.unk_id = self.stoi[UNK]

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        specials: Sequence[str] = (UNK,),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Specials first, then tokens by descending frequency (ties: first seen), keeping count >= min_freq."""
        counts = Counter(tokens)
        for special in specials:
            counts.pop(special, None)
        ranked = [t for t, c in counts.most_common() if c >= min_freq]
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls([*specials, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def state_dict(self) -> dict[str, list[str]]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(state["itos"])
