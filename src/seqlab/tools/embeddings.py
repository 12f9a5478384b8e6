"""`python -m seqlab.embeddings`: distances and nearest neighbours in a model's word-embedding space."""

from __future__ import annotations

from itertools import combinations

import torch
from omegaconf import DictConfig
from torch import Tensor

from seqlab.data.text import Vocabulary
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


def pair_distances(
    matrix: Tensor, vocab: Vocabulary, pairs: list[tuple[str, str]], metric: str = "cosine"
) -> dict[tuple[str, str], float]:
    """The distance between the two words of each pair, in the embedding `matrix` (one row per word)."""
    check_words(vocab, [w for pair in pairs for w in pair])
    return {
        (a, b): float(distances(matrix[vocab.stoi[a]], matrix[vocab.stoi[b]][None], metric)[0])
        for a, b in pairs
    }


def nearest(
    matrix: Tensor, vocab: Vocabulary, word: str, k: int = 10, metric: str = "cosine"
) -> list[tuple[str, float]]:
    """The k words closest to `word`, itself excluded, with their distances."""
    (index,) = check_words(vocab, [word])
    d = distances(matrix[index], matrix, metric)
    d[index] = float("inf")
    values, ids = d.topk(min(k, len(vocab) - 1), largest=False)
    return [(vocab.itos[i], float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]


def report_embeddings(cfg: DictConfig) -> dict:
    """`python -m seqlab.embeddings`: distances between word pairs and nearest neighbours in a checkpoint."""
    from seqlab.restore import restore_for_tool

    _, datamodule, task = restore_for_tool(
        cfg,
        "the embeddings tool needs a model with a token embedding: a language model or text classifier",
        lambda task, datamodule: (
            hasattr(task.net, "embedding") and getattr(datamodule, "vocab", None) is not None
        ),
    )
    layer, vocab = task.net.embedding, datamodule.vocab
    matrix, words = layer.weight.detach(), list(cfg.words)
    check_words(vocab, words)  # every unknown word named at once, before any work
    pairs = pair_distances(matrix, vocab, list(combinations(words, 2)), cfg.metric)
    print(f"{cfg.metric} distances ({len(vocab)} words, dimension {matrix.size(1)}):")
    for (a, b), d in pairs.items():
        print(f"  {a} - {b}: {d:.4f}")
    neighbours = {w: nearest(matrix, vocab, w, cfg.k, cfg.metric) for w in words}
    for word, near in neighbours.items():
        print(f"nearest to {word}: " + ", ".join(f"{n} ({d:.3f})" for n, d in near))
    if cfg.projector:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(cfg.projector) as writer:
            writer.add_embedding(matrix, metadata=vocab.itos, tag="embedding")
        print(f"projector files written; view them with: tensorboard --logdir {cfg.projector}")
    return {"pairs": pairs, "nearest": neighbours}
