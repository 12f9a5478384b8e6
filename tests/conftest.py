"""Shared fixtures: tiny MNIST IDX files written by the tests, and Hydra configs composed in-process."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from seqlab.config import CONF_DIR

# The tests' tiny data sets are not the published files: their checksums are checked only where a test
# asks for it (tests/test_hardening.py), here and in every process a test starts.
os.environ["SEQLAB_DATA_VERIFY"] = "off"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    """With SEQLAB_REQUIRE_ALL=1 (set by CI), a test that skips for want of a component (a SLURM
    controller, the submitit launcher, the right to mount a tmpfs) fails instead: CI must run it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("SEQLAB_REQUIRE_ALL") == "1":
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but SEQLAB_REQUIRE_ALL=1 needs it to run: {reason}"


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_mnist(root: Path, n_train: int = 240, n_test: int = 60, seed: int = 0) -> Path:
    """Digit-like data: class k lights up row k+5 more, so a model can learn something."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), labels + 5] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


PTB_WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "under",
    "mat",
    "log",
    "big",
    "small",
    "<unk>",
    "N",
]


def make_ptb(root: Path, lines: tuple[int, int, int] = (120, 20, 20), seed: int = 0) -> Path:
    """A tiny PTB-like corpus: short sentences over 14 words; the test file has one word unseen in training."""
    rng = np.random.default_rng(seed)
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "valid", "test"), lines, strict=True):
        text = "".join(" " + " ".join(rng.choice(PTB_WORDS, rng.integers(3, 9))) + " \n" for _ in range(n))
        if name == "test":
            text += " the zebra sat \n"
        (folder / f"ptb.{name}.txt").write_text(text)
    return root


POSITIVE = ["great", "wonderful", "superb", "loved", "brilliant", "fun"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "waste"]
FILLER = ["the", "movie", "film", "plot", "actor", "story", "was", "a", "and", "it", "this"]


def imdb_rows(n: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, rng.integers(3, 30))) + list(
            rng.choice(POSITIVE if label else NEGATIVE, 2)
        )
        rng.shuffle(words)
        rows.append((" ".join(words).capitalize() + ".<br /><br />", label))
    return rows


def make_imdb(root: Path, n_train: int = 200, n_test: int = 60, seed: int = 0) -> Path:
    """A tiny IMDB-like CSV pair: each review holds two sentiment words among filler."""
    import csv

    rng = np.random.default_rng(seed)
    folder = root / "imdb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
            writer.writerow(["text", "label"])
            writer.writerows(imdb_rows(n, rng))
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_imdb(make_ptb(make_mnist(root)))


@pytest.fixture
def make_cfg(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose `train.yaml` (or another entry config) as the CLI would, writing into tmp_path."""

    def _make(*overrides: str, config_name: str = "train", output_dir: Path | None = None) -> DictConfig:
        out = output_dir or tmp_path / "run"
        quiet = ["trainer.enable_progress_bar=false"] if config_name in ("train", "eval") else []
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name,
                overrides=[f"paths.data_dir={data_dir}", *quiet, *overrides],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            cfg.hydra.runtime.output_dir = str(out)
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()
