"""`python -m seqlab.predict`: label reviews with a trained text classifier. `text=` (one or a list),
`file=` (one review per line, or a CSV with a `text` column and an optional `label` column, then also the
accuracy); `out=` writes a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqlab.atomic import write_text_atomic
from seqlab.errors import ConfigError, DataError


def read_lines(path: Path) -> list[str]:
    """One review per line. Lines end at \\n (or \\r\\n) only: reviews hold U+0085, U+2028 and other
    characters that str.splitlines() would also split at."""
    from seqlab.data.text import decode_utf8

    lines = decode_utf8(path.read_bytes(), path).split("\n")
    return [line.removesuffix("\r") for line in lines if line.strip()]


def read_reviews(cfg: DictConfig) -> tuple[list[str], list[int] | None]:
    """The reviews to classify, and their labels where a CSV file gives them."""
    if (cfg.text is None) == (cfg.file is None):
        raise ConfigError(
            'give exactly one of text="...", text=\'["...","..."]\' or file=<path: one review per line, '
            "or a .csv with a text column>"
        )
    if cfg.text is not None:
        reviews = [str(t) for t in cfg.text] if OmegaConf.is_list(cfg.text) else [str(cfg.text)]
        if not reviews:
            raise ConfigError("text=[] holds no reviews: give one or more, e.g. text='[\"Great film\"]'")
        return reviews, None
    path = Path(cfg.file)
    if not path.is_file():
        raise DataError(f"file={str(path)!r}: no such file")
    if path.suffix.lower() == ".csv":
        from seqlab.data.text import read_csv

        reviews, labels = read_csv(path, require_label=False)
    else:
        reviews, labels = read_lines(path), None
    if not reviews:
        raise DataError(f"file={str(path)!r} holds no reviews (one review per line expected)")
    print(f"{len(reviews)} reviews read from {path}" + (" (with labels)" if labels is not None else ""))
    return reviews, labels


def write_predictions(path: Path, reviews: list[str], results: list[tuple[str, float]]) -> None:
    """text, label, probability (of that label) per review, as CSV."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "probability"])
    writer.writerows(
        (review, label, f"{prob:.6f}") for review, (label, prob) in zip(reviews, results, strict=True)
    )
    write_text_atomic(path, buffer.getvalue())


def predict_from_checkpoint(cfg: DictConfig) -> list[tuple[str, float]]:
    """(label, probability of that label) for each review: printed one per line, or written to `out`."""
    import torch

    from seqlab.restore import restore_for_tool
    from seqlab.tasks import SequenceClassifier

    reviews, labels = read_reviews(cfg)
    _, datamodule, task = restore_for_tool(
        cfg,
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
    if cfg.get("out"):
        write_predictions(Path(cfg.out), reviews, results)
        print(f"{len(results)} predictions written to {cfg.out}")
    else:
        for (label, prob), review in zip(results, reviews, strict=True):
            snippet = review if len(review) <= 60 else review[:57] + "..."
            print(f"{label}\t{prob:.4f}\t{snippet}")
    if labels is not None:
        correct = sum(
            datamodule.label_names[y] == label for y, (label, _) in zip(labels, results, strict=True)
        )
        print(f"accuracy: {correct / len(labels):.4f} ({correct} of {len(labels)})")
    return results
