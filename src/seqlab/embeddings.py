"""`python -m seqlab.embeddings ckpt_path=... words=[army,taxpayer] metric=cosine k=10`."""

from __future__ import annotations

from itertools import combinations

import hydra
from omegaconf import DictConfig

from seqlab.config import CONF_DIR
from seqlab.errors import ConfigError
from seqlab.train import run


def embeddings(cfg: DictConfig) -> dict:
    from seqlab.pipeline import restore_from_checkpoint
    from seqlab.tools.embeddings import check_words, distances, nearest

    run_cfg, datamodule, task = restore_from_checkpoint(cfg.ckpt_path)
    layer, vocab = getattr(task.net, "embedding", None), getattr(datamodule, "vocab", None)
    if layer is None or vocab is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} holds a model without a token embedding ({run_cfg.get('task_name')}); "
            "use a language model or text classifier checkpoint"
        )
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
