"""Course exercises as library functions, beside the framework rather than in it: nothing in seqlab uses
them; tests check them against the course's worked answers and docs/tasks.md ("Course extras") shows them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from seqlab.data.text import Vocabulary


def one_hot(vocab: Vocabulary, words: Iterable[str]) -> torch.Tensor:
    """(n, len(vocab)) float one-hot rows; an unknown word lights `<unk>`, the extra category."""
    ids = torch.tensor(vocab.encode(words), dtype=torch.long)
    return torch.nn.functional.one_hot(ids, len(vocab)).float()


def receptive_field(
    layers: Sequence[Mapping[str, Any] | Sequence[int]], input_size: int
) -> list[dict[str, float | int | str]]:
    """Per layer: output size, jump (input pixels between neighbouring outputs), receptive field and centres.

    `layers` are `{"kernel": k, "stride": s, "padding": p, "name": ...}` (stride 1 and padding 0 by
    default) or `(k, s, p)` tuples, for convolutions and poolings alike. Positions are 1-based input
    pixels: `start` is the centre of the first output unit's field, `centre` that of the middle unit.
    """
    size, jump, field, start = input_size, 1, 1, 1.0  # 1-based: the first pixel is centred at 1.0
    rows = []
    for i, layer in enumerate(layers):
        spec = (
            dict(layer)
            if isinstance(layer, Mapping)
            else dict(zip(("kernel", "stride", "padding"), layer, strict=False))
        )
        k, s, p = int(spec["kernel"]), int(spec.get("stride", 1)), int(spec.get("padding", 0))
        if k <= 0 or s <= 0 or p < 0:
            raise ValueError(f"layer {i}: kernel={k}, stride={s} must be positive and padding={p} >= 0")
        out = (size + 2 * p - k) // s + 1
        if out <= 0:
            raise ValueError(f"layer {i}: kernel {k} does not fit an input of {size} (+{p} padding)")
        start = start + ((k - 1) / 2 - p) * jump
        field = field + (k - 1) * jump
        jump = jump * s
        size = out
        rows.append(
            {
                "name": str(spec.get("name", f"layer{i + 1}")),
                "output_size": size,
                "jump": jump,
                "receptive_field": field,
                "start": start,
                "centre": start + (size - 1) // 2 * jump,
            }
        )
    return rows
