"""`python -m seqlab.predict ckpt_path=... text="..."` (or a list `text='["...","..."]'`, or `file=` with one
review per line)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from seqlab.config import CONF_DIR
from seqlab.errors import ConfigError, DataError
from seqlab.train import run


def read_reviews(cfg: DictConfig) -> list[str]:
    if (cfg.text is None) == (cfg.file is None):
        raise ConfigError(
            'give exactly one of text="...", text=\'["...","..."]\' or file=<path, one review per line>'
        )
    if cfg.text is not None:
        reviews = [str(t) for t in cfg.text] if OmegaConf.is_list(cfg.text) else [str(cfg.text)]
        if not reviews:
            raise ConfigError("text=[] holds no reviews: give one or more, e.g. text='[\"Great film\"]'")
        return reviews
    path = Path(cfg.file)
    if not path.is_file():
        raise DataError(f"file={str(path)!r}: no such file")
    from seqlab.data.text import decode_utf8

    reviews = [line for line in decode_utf8(path.read_bytes(), path).splitlines() if line.strip()]
    if not reviews:
        raise DataError(f"file={str(path)!r} holds no reviews (one review per line expected)")
    return reviews


def predict(cfg: DictConfig) -> list[tuple[str, float]]:
    """(label, probability of that label) for each review, printed one per line."""
    import torch

    from seqlab.pipeline import restore_for_tool
    from seqlab.tasks import SequenceClassifier

    reviews = read_reviews(cfg)
    _, datamodule, task = restore_for_tool(
        cfg.ckpt_path,
        "predict needs a text classifier checkpoint, e.g. from experiment=imdb_lstm",
        lambda task, datamodule: isinstance(task, SequenceClassifier) and hasattr(datamodule, "encode_texts"),
    )
    task.eval()
    ids = [torch.tensor(row) for row in datamodule.encode_texts(reviews)]
    results = []
    with torch.no_grad():
        for start in range(0, len(ids), cfg.batch_size):
            tokens, mask = datamodule.collate(ids[start : start + cfg.batch_size])
            probs = task(tokens, mask).softmax(-1)
            for p in probs:
                label = int(p.argmax())
                results.append((datamodule.label_names[label], float(p[label])))
    for (label, prob), review in zip(results, reviews, strict=True):
        snippet = review if len(review) <= 60 else review[:57] + "..."
        print(f"{label}\t{prob:.4f}\t{snippet}")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run(predict, cfg)


if __name__ == "__main__":
    main()
