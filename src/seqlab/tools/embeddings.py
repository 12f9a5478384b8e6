"""Distances and nearest neighbours in a model's word-embedding space."""

from __future__ import annotations

import torch
from torch import Tensor

from seqlab.data.vocab import Vocabulary
from seqlab.errors import ConfigError

METRICS = ("cosine", "euclidean")


def distances(query: Tensor, matrix: Tensor, metric: str = "cosine") -> Tensor:
    """Distance from one vector (D,) to every row of (N, D): 1 - cosine similarity, or Euclidean."""
    if metric == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(matrix, query[None], dim=-1)
    if metric == "euclidean":
        return (matrix - query).norm(dim=-1)
    raise ConfigError(f"metric={metric!r} is not supported; allowed: {', '.join(METRICS)}")


def check_words(vocab: Vocabulary, words: list[str]) -> list[int]:
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ConfigError(f"words not in the model's vocabulary ({len(vocab)} words): {', '.join(unknown)}")
    return vocab.encode(words)


def nearest(
    matrix: Tensor, vocab: Vocabulary, word: str, k: int = 10, metric: str = "cosine"
) -> list[tuple[str, float]]:
    """The k words closest to `word`, itself excluded, with their distances."""
    (index,) = check_words(vocab, [word])
    d = distances(matrix[index], matrix, metric)
    d[index] = float("inf")
    values, ids = d.topk(min(k, len(vocab) - 1), largest=False)
    return [(vocab.itos[i], float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
