"""IMDB movie reviews (Maas et al. 2011): the official 25k/25k split through the text pipeline."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from seqlab.data import text
from seqlab.data.base import SequenceDataModule, bucket_batches, shuffled_batches
from seqlab.data.files import VERIFY, verify_files
from seqlab.data.imdb_source import (
    ARCHIVE,
    ARCHIVE_MD5,
    SPLITS,
    ensure_source,
    read_source,
    source_files,
    split_reviews,
)
from seqlab.data.text import Vocabulary
from seqlab.errors import DataError, check_choice, check_positive, check_positive_or_null

log = logging.getLogger(__name__)
LABEL_NAMES = ("neg", "pos")
PADDING_SIDES = ("left", "right")
NGRAM_LAYOUTS = {"bag": "pairs after the words", "aligned": "beside each word, the pair it starts"}
CACHE_FORMAT = 1


class IMDBDataModule(SequenceDataModule):
    """Reviews -> word ids (`<pad>`=0, `<unk>`=1) -> padded batches `(ids, labels, mask)`, whose mask stays
    on the host when the rest goes to a GPU.

    `split`: `official` keeps Maas et al.'s 25k/25k train/test and carves a seeded, stratified validation
    part of `val_size` reviews from the training half; `course` pools all 50,000 reviews and splits them
    70/10/20 into train/val/test with `split_seed` (the course's protocol; `val_size` does not apply).
    The vocabulary comes from the training reviews only.
    The encoded data is cached under `cache_dir` (default `<data_dir>/imdb/cache`), keyed by the pipeline
    settings and the source files; a changed setting rebuilds it.
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        split: str = "official",
        val_size: int = 2500,
        split_seed: int = 0,
        min_freq: int = 5,
        max_size: int | None = None,
        lowercase: bool = True,
        remove_stop_words: bool = False,
        max_length: int | None = 400,
        ngrams: int = 1,
        ngram_layout: str = "bag",
        padding_side: str = "right",
        bucket: bool = True,
        pad_to_max_length: bool = False,
        cache_dir: str | None = None,
        shuffle_seed: int | None = 0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        verify: str = "warn",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed, num_workers, pin_memory)
        check_choice("padding_side", padding_side, PADDING_SIDES)
        check_choice("verify", verify, VERIFY)
        self.verify = verify
        check_choice("split", split, SPLITS)
        check_positive(val_size=val_size, min_freq=min_freq)
        check_positive_or_null(max_size=max_size, max_length=max_length)
        check_choice("ngrams", ngrams, {1: "words", 2: "words + word pairs"})
        check_choice("ngram_layout", ngram_layout, NGRAM_LAYOUTS)
        if pad_to_max_length and not max_length:
            raise ValueError("pad_to_max_length=true needs a max_length")
        self.folder = Path(data_dir) / "imdb"
        self.cache_dir = Path(cache_dir) if cache_dir else self.folder / "cache"
        self.val_size, self.split_seed = val_size, split_seed
        self.split = split
        self.settings = {
            "min_freq": min_freq,
            "max_size": max_size,
            "lowercase": lowercase,
            "remove_stop_words": remove_stop_words,
            "max_length": max_length,
            "ngrams": ngrams,
            "ngram_layout": ngram_layout,
        }
        self.padding_side, self.bucket, self.pad_to_max_length = padding_side, bucket, pad_to_max_length
        self.vocab: Vocabulary | None = None
        self.splits: dict[str, tuple[list[Tensor], Tensor]] = {}
        self.label_names = LABEL_NAMES

    # -- the encoded data and its cache -------------------------------------------------------------
    def cache_path(self) -> Path:
        sources = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in source_files(self.folder)]
        key = json.dumps(
            {
                "format": CACHE_FORMAT,
                "settings": self.settings,
                "split": self.split,
                "val_size": self.val_size,
                "split_seed": self.split_seed,
                "sources": sources,
            },
            sort_keys=True,
        )
        return self.cache_dir / f"imdb-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"

    def _encode_words(self, texts: list[str]) -> list[list[int]]:
        s = self.settings
        ids = text.encode(texts, self.vocab, s["lowercase"], s["remove_stop_words"], s["max_length"])
        empty = sum(not row for row in ids)
        if empty:
            log.warning("%d empty review(s) read as a single %s", empty, text.UNK)
        return [row or [self.vocab.unk_id] for row in ids]

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        """Raw reviews -> ids with this module's vocabulary and settings; an empty review reads as `<unk>`.

        With `ngrams: 2` each review's known word pairs join it: their ids after the words (`ngram_layout:
        bag`), or beside each word the id of the pair it starts, a (length, 2) row (`aligned`).
        """
        return self._add_pairs(self._encode_words(texts))

    def _add_pairs(self, rows: list[list[int]]) -> list:
        if self.settings["ngrams"] == 1:
            return rows
        if self.settings["ngram_layout"] == "aligned":
            return text.align_bigrams(rows, self.vocab)
        return text.add_bigrams(rows, self.vocab)

    def _build(self) -> dict[str, Any]:
        parts = split_reviews(read_source(self.folder), self.split, self.split_seed, self.val_size)
        s = self.settings
        self.vocab = text.build_vocab(
            parts["train"][0], s["min_freq"], s["max_size"], s["lowercase"], s["remove_stop_words"]
        )
        rows = {split: self._encode_words(split_texts) for split, (split_texts, _) in parts.items()}
        if s["ngrams"] == 2:
            self.vocab = text.add_bigram_vocab(self.vocab, rows["train"], s["min_freq"])
            rows = {split: self._add_pairs(split_rows) for split, split_rows in rows.items()}
        data: dict[str, Any] = {"itos": self.vocab.itos}
        for split, split_rows in rows.items():
            data[split] = {
                "ids": torch.from_numpy(np.concatenate([np.asarray(r, dtype=np.int32) for r in split_rows])),
                "lengths": torch.tensor([len(row) for row in split_rows]),
                "labels": torch.tensor(parts[split][1]),
            }
        return data

    def _write_cache(self, path: Path, data: dict[str, Any]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                torch.save(data, f)
            os.replace(tmp, path)
        except OSError as err:
            log.warning(
                "Could not write the IMDB cache to %s (%s); set data.cache_dir to a writable folder "
                "to skip re-encoding next time",
                path.parent,
                err,
            )

    def load_encoded(self) -> dict[str, Any]:
        """The encoded splits, from the cache when its key matches, else built (and cached)."""
        ensure_source(self.folder)  # before the key: a download or extraction changes the source files
        # Only the archive has a published md5; the CSVs and an extracted aclImdb/ have none.
        verify_files(self.folder, {ARCHIVE: ARCHIVE_MD5}, "IMDB", self.verify)
        path = self.cache_path()
        if path.exists():
            try:
                return torch.load(path, weights_only=True)
            except Exception as err:  # a damaged cache is rebuilt, not trusted
                log.warning("Ignoring the unreadable cache %s (%s)", path, err)
        vocab_from_checkpoint = self.vocab
        data = self._build()
        self._write_cache(path, data)
        if vocab_from_checkpoint is not None:
            self.vocab = vocab_from_checkpoint
        return data

    def prepare_data(self) -> None:
        if not self.splits:  # not already loaded for the model's vocabulary size
            self.load_encoded()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        data = self.load_encoded()
        if self.vocab is None:
            self.vocab = Vocabulary(data["itos"])
        elif self.vocab.itos != data["itos"]:
            raise DataError(
                "the checkpoint's vocabulary differs from the one built from the data with these settings; "
                "use the data and data.* settings the model was trained with"
            )
        for split in ("train", "val", "test"):
            part = data[split]
            rows = list(part["ids"].long().split(part["lengths"].tolist()))
            self.splits[split] = (rows, part["labels"])

    @property
    def dims(self) -> dict[str, int]:
        if self.vocab is None:
            self.setup()
        return {"vocab_size": len(self.vocab), "num_classes": len(self.label_names), "pad_id": 0}

    # -- batches ------------------------------------------------------------------------------------
    def collate(self, rows: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Pad to the longest row (or to max_length) on `padding_side`; mask is True on real tokens.
        Aligned word pairs' (length, 2) rows give ids of shape (batch, width, 2)."""
        width = max(len(r) for r in rows)
        if self.pad_to_max_length:  # rows with word pairs (ngrams: 2) may be longer than max_length
            width = max(width, self.settings["max_length"])
        ids = torch.zeros(len(rows), width, *rows[0].shape[1:], dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            span = slice(0, len(row)) if self.padding_side == "right" else slice(width - len(row), width)
            ids[i, span] = row
            mask[i, span] = True
        return ids, mask

    def collate_batch(self, items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        ids, mask = self.collate([row for row, _ in items])
        return ids, torch.stack([label for _, label in items]), mask

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Ids and labels go to the device; the mask stays on the host (the models move it on): packing
        # needs the row lengths there, and reading them from a mask on a GPU would wait for the device.
        ids, labels, mask = batch
        return (*super().transfer_batch_to_device((ids, labels), device, dataloader_idx), mask)

    def loader(self, split: str, train: bool) -> DataLoader:
        rows, labels = self.splits[split]
        size = self.batch_size if train else self.eval_batch_size
        if self.bucket:
            make = bucket_batches(torch.tensor([len(r) for r in rows]), size)
        else:
            make = shuffled_batches(len(rows), size)
        return self.data_loader(
            list(zip(rows, labels, strict=True)),
            batch_sampler=self.batch_sampler(make, train),
            collate_fn=self.collate_batch,
        )

    def extra_state(self) -> dict[str, Any]:
        return (
            {} if self.vocab is None else {"vocab": self.vocab.state_dict(), "settings": dict(self.settings)}
        )

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "vocab" in state:
            self.vocab = Vocabulary.from_state_dict(state["vocab"])
