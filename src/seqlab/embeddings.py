"""`python -m seqlab.embeddings ckpt_path=... words=[army,taxpayer] metric=cosine k=10`."""

from __future__ import annotations

from itertools import combinations

import hydra
from omegaconf import DictConfig

from seqlab.config import CONF_DIR
from seqlab.train import run


def embeddings(cfg: DictConfig) -> dict:
    from seqlab.pipeline import restore_for_tool
    from seqlab.tools.embeddings import check_words, distances, nearest

    _, datamodule, task = restore_for_tool(
        cfg,
        "the embeddings tool needs a model with a token embedding: a language model or text classifier",
        lambda task, datamodule: (
            hasattr(task.net, "embedding") and getattr(datamodule, "vocab", None) is not None
        ),
    )
    layer, vocab = task.net.embedding, datamodule.vocab
    matrix, words = layer.weight.detach(), list(cfg.words)
    ids = check_words(vocab, words)
    pairs = {
        (a, b): float(distances(matrix[ia], matrix[ib][None], cfg.metric)[0])
        for (a, ia), (b, ib) in combinations(zip(words, ids, strict=True), 2)
    }
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="embeddings")
def main(cfg: DictConfig) -> None:
    run(embeddings, cfg)


if __name__ == "__main__":
    main()
