"""The IMDB source files: download and safe extraction of the archive, reading the CSVs or `aclImdb/`,
and the train/val/test splits (`official` or `course`)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import torch
from torch import Tensor

from seqlab.data import text
from seqlab.data.files import download, folder_lock
from seqlab.errors import ConfigError, DataError

ARCHIVE = "aclImdb_v1.tar.gz"
ARCHIVE_URLS = ["https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"]
ARCHIVE_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
SPLITS = ("official", "course")
COURSE_FRACTIONS = (0.7, 0.1, 0.2)  # train/val/test of the 50,000 pooled reviews


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing members that would land outside `target` (or links, devices)."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not dest.is_relative_to(target) or member.issym() or member.islnk() or member.isdev():
                raise DataError(
                    f"{archive}: refusing member {member.name!r}, it would write outside {target}"
                )
        tar.extractall(target, filter="data")


def ensure_source(folder: Path) -> None:
    """A readable source in `folder`: the CSVs, an extracted `aclImdb/`, or the archive (downloaded if missing)."""

    def present() -> bool:
        return any((folder / name).exists() for name in ("train.csv", "test.csv", "aclImdb"))

    if present():
        return
    with folder_lock(folder):  # one process downloads and extracts; the others wait, then find it done
        if present():
            return
        archive = folder / ARCHIVE
        if not archive.exists():
            try:
                download(ARCHIVE_URLS, archive, ARCHIVE_MD5, timeout=60)
            except DataError as err:
                raise DataError(
                    f"IMDB data not found in {folder}: expected train.csv and test.csv (columns text,label), "
                    f"an extracted aclImdb/ folder, or {ARCHIVE}; the download failed.\n{err}"
                ) from None
        extracting = folder / ".aclImdb.partial"  # renamed into place whole: a killed extraction is redone
        shutil.rmtree(extracting, ignore_errors=True)
        safe_extract(archive, extracting)
        if not (extracting / "aclImdb").is_dir():
            raise DataError(
                f"{archive} holds no aclImdb/ folder: is it the IMDB archive? Delete it to fetch it again"
            )
        os.replace(extracting / "aclImdb", folder / "aclImdb")
        shutil.rmtree(extracting, ignore_errors=True)


def read_source(folder: Path) -> dict[str, tuple[list[str], list[int]]]:
    """train/test from `train.csv`/`test.csv`, else from the extracted `aclImdb/`."""
    ensure_source(folder)
    if (folder / "train.csv").exists() or (folder / "test.csv").exists():
        return {split: text.read_csv(folder / f"{split}.csv") for split in ("train", "test")}
    return {split: text.read_folder(folder / "aclImdb" / split) for split in ("train", "test")}


def source_files(folder: Path) -> list[Path]:
    csvs = [folder / "train.csv", folder / "test.csv"]
    if all(p.exists() for p in csvs):
        return csvs
    return [p for p in (folder / "aclImdb", folder / ARCHIVE) if p.exists()]


def split_reviews(
    source: dict[str, tuple[list[str], list[int]]], split: str, split_seed: int, val_size: int
) -> dict[str, tuple[list[str], list[int]]]:
    """The source's train/test reviews -> the train/val/test parts of `split`: `course` pools all reviews
    and cuts them 70/10/20 with `split_seed`; `official` keeps the test half and carves a stratified
    validation part of `val_size` reviews from the training half."""

    def pick(texts: list[str], labels: list[int], idx: list[int]) -> tuple[list[str], list[int]]:
        return [texts[i] for i in idx], [labels[i] for i in idx]

    if split == "course":
        texts, labels = source["train"][0] + source["test"][0], source["train"][1] + source["test"][1]
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(split_seed))
        n_train, n_val = (round(f * len(texts)) for f in COURSE_FRACTIONS[:2])
        cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val]}
        cuts["test"] = order[n_train + n_val :]
        return {name: pick(texts, labels, idx.tolist()) for name, idx in cuts.items()}
    texts, labels = source["train"]
    val_idx = stratified_indices(torch.tensor(labels), val_size, split_seed)
    in_val = torch.zeros(len(texts), dtype=torch.bool)
    in_val[val_idx] = True
    train_idx = (~in_val).nonzero().squeeze(1).tolist()
    return {
        "train": pick(texts, labels, train_idx),
        "val": pick(texts, labels, val_idx),
        "test": source["test"],
    }


def stratified_indices(labels: Tensor, size: int, seed: int) -> list[int]:
    """`size` indices drawn with each label's share of `labels`."""
    if size >= len(labels):
        raise ConfigError(f"data.val_size={size} must be smaller than the {len(labels)} training reviews")
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for label in labels.unique():
        members = (labels == label).nonzero().squeeze(1)
        share = round(size * len(members) / len(labels))
        picked += members[torch.randperm(len(members), generator=generator)[:share]].tolist()
    return sorted(picked)
