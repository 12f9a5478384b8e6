"""Defects a new user meets in the first hour: downloads, data order, resume, tools' data, settings."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import multiprocessing
import shutil
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch

from seqlab import pipeline
from seqlab.data import IMDBDataModule, MNISTDataModule, ptb
from seqlab.data import imdb_source as imdb
from seqlab.errors import ConfigError
from seqlab.tools.attack import attack_checkpoint as attack
from tests.conftest import make_imdb, make_mnist, make_ptb


class Mirror:
    """A loopback HTTP server over a folder, counting the requests for each file; `delay` slows each answer."""

    def __init__(self, root: Path, delay: float = 0.0) -> None:
        self.root, self.delay = root, delay
        self.hits = multiprocessing.Manager().dict()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                mirror.hits[name] = mirror.hits.get(name, 0) + 1
                path = mirror.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                time.sleep(mirror.delay)
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def imdb_archive(tmp_path: Path) -> Path:
    """aclImdb_v1.tar.gz holding aclImdb/{train,test}/{pos,neg}/*.txt, made from the tiny CSVs."""
    from seqlab.data.text import read_csv

    source = make_imdb(tmp_path / "source")
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / imdb.ARCHIVE, "w:gz") as tar:
        for split in ("train", "test"):
            texts, labels = read_csv(source / "imdb" / f"{split}.csv")
            for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
                data = text.encode()
                info = tarfile.TarInfo(f"aclImdb/{split}/{('neg', 'pos')[label]}/{i}_7.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return served


@pytest.fixture
def ptb_mirror(tmp_path, monkeypatch):
    served = make_ptb(tmp_path / "served") / "ptb"
    mirror = Mirror(served)
    monkeypatch.setattr(ptb, "MIRRORS", [mirror.url])
    monkeypatch.setattr(ptb, "FILES", {name: md5(served / name) for name in ptb.FILES})
    yield mirror
    mirror.close()


@pytest.fixture
def imdb_mirror(tmp_path, monkeypatch):
    served = imdb_archive(tmp_path)
    mirror = Mirror(served, delay=0.5)
    monkeypatch.setattr(imdb, "ARCHIVE_URLS", [mirror.url + imdb.ARCHIVE])
    monkeypatch.setattr(imdb, "ARCHIVE_MD5", md5(served / imdb.ARCHIVE))
    yield mirror
    mirror.close()


def test_train_downloads_ptb_into_an_empty_data_folder(make_cfg, tmp_path, ptb_mirror):
    empty = tmp_path / "empty"
    cfg = make_cfg(
        "experiment=ptb_lab",
        "debug=limit",
        "data.seq_len=6",
        "model.truncated_bptt_steps=3",
        "model.net.hidden_dim=8",
        f"paths.data_dir={empty}",
    )
    _, metrics = pipeline.train(cfg)
    assert metrics["test/ppl"] > 1 and dict(ptb_mirror.hits) == {name: 1 for name in ptb.FILES}
    assert sorted(p.name for p in (empty / "ptb").glob("ptb.*.txt")) == sorted(ptb.FILES)


def test_train_downloads_and_extracts_imdb_into_an_empty_data_folder(make_cfg, tmp_path, imdb_mirror):
    empty = tmp_path / "empty"
    cfg = make_cfg(
        "experiment=imdb_bag",
        "debug=limit",
        "data.val_size=40",
        "data.min_freq=1",
        f"paths.data_dir={empty}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    _, metrics = pipeline.train(cfg)
    assert metrics["test/acc"] >= 0 and dict(imdb_mirror.hits) == {imdb.ARCHIVE: 1}
    assert len(list((empty / "imdb" / "aclImdb" / "test").glob("*/*.txt"))) == 60


def prepare_imdb(data_dir: str, cache_dir: str) -> None:
    IMDBDataModule(data_dir, val_size=40, min_freq=1, cache_dir=cache_dir).prepare_data()


def test_processes_preparing_imdb_at_once_download_and_extract_it_once(tmp_path, imdb_mirror):
    """DDP ranks (or parallel jobs) prepare the same folder: one downloads and extracts, the others wait."""
    context = multiprocessing.get_context("fork")  # the children keep the patched mirror
    args = (str(tmp_path / "shared"), str(tmp_path / "cache"))
    workers = [context.Process(target=prepare_imdb, args=args) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert dict(imdb_mirror.hits) == {imdb.ARCHIVE: 1}
    assert not list((tmp_path / "shared" / "imdb").glob(".aclImdb.partial*"))


def first_epoch_order(data_dir: Path, shuffle_seed: int | None) -> list[int]:
    dm = MNISTDataModule(str(data_dir), val_size=40, batch_size=8, shuffle_seed=shuffle_seed)
    dm.setup()
    return [y for _, labels in dm.train_dataloader() for y in labels.tolist()]


def test_unseeded_runs_do_not_share_one_data_order(data_dir):
    assert first_epoch_order(data_dir, 0) == first_epoch_order(data_dir, 0)
    orders = {tuple(first_epoch_order(data_dir, None)) for _ in range(3)}
    assert len(orders) == 3, "seed=null shuffled as seed 0"


@pytest.mark.parametrize("experiment", ["mnist_rnn", "imdb_lstm"])
def test_every_training_epoch_draws_a_new_order(make_cfg, experiment):
    """Lightning sets the epoch on `batch_sampler.sampler`: a batch sampler that is not its own sampler
    replays epoch 0's order in every epoch."""
    from tests.helpers import EpochOrders

    EpochOrders.orders = []
    cfg = make_cfg(
        f"experiment={experiment}",
        "debug=limit",
        "trainer.limit_train_batches=1.0",
        "trainer.max_epochs=3",
        "data.val_size=40",
        "data.batch_size=8",
        "model.net.hidden_dim=8",
        "+callbacks.orders._target_=tests.helpers.EpochOrders",
    )
    pipeline.train(cfg)
    first, *later = EpochOrders.orders
    assert len(later) == 2 and all(sorted(o) == sorted(first) and o != first for o in later)


def test_resume_without_a_checkpoint_warns_naming_the_run_dir(make_cfg, tmp_path, caplog):
    cfg = make_cfg(
        "experiment=mnist_rnn", "debug=limit", "data.val_size=40", "resume=true", output_dir=tmp_path / "typo"
    )
    with caplog.at_level(logging.WARNING):
        pipeline.train(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tmp_path / "typo") in w and "from scratch" in w for w in warnings), warnings


def test_tools_read_data_from_their_own_data_dir(make_cfg, tmp_path):
    trained_on = make_mnist(tmp_path / "trained_on")
    pipeline.train(
        make_cfg(
            "experiment=mnist_lstm",
            "debug=limit",
            "data.val_size=40",
            "model.net.hidden_dim=8",
            f"paths.data_dir={trained_on}",
            output_dir=tmp_path / "run",
        )
    )
    moved = tmp_path / "elsewhere"
    shutil.move(trained_on, moved)  # another machine: the training machine's data path is gone
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    report = attack(
        make_cfg(
            f"ckpt_path={ckpt}",
            f"paths.data_dir={moved}",
            "n=1",
            "targets=1",
            "steps=5",
            "out=null",
            config_name="attack",
        )
    )
    assert "targeted" in report


def test_eval_checks_its_splits_before_any_work(make_cfg, tmp_path):
    cfg = make_cfg(f"ckpt_path={tmp_path / 'none.ckpt'}", "splits=[val,trian]", config_name="eval")
    with pytest.raises(ConfigError, match=r"splits=\['val', 'trian'\]: allowed splits are val and test"):
        pipeline.evaluate(cfg)  # the missing checkpoint would be reported otherwise


@pytest.mark.parametrize("experiment", ["mnist_rnn", "imdb_bag"])
def test_a_too_large_validation_split_is_one_config_error(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", "data.val_size=70000")
    with pytest.raises(ConfigError, match="data.val_size=70000 must be smaller than the"):
        pipeline.train(cfg)


def test_switching_optimizer_gives_it_its_own_learning_rate(make_cfg):
    assert make_cfg("experiment=imdb_lstm").optimizer.lr == 0.002  # Adam, its best measured optimizer
    assert (
        make_cfg("experiment=imdb_lstm", "optimizer=sgd").optimizer.lr == 0.1
    )  # the course's SGD, its table
    assert make_cfg("experiment=imdb_gru", "optimizer=adagrad").optimizer.lr == 0.05  # its table
    assert make_cfg("experiment=ptb_zaremba_small", "optimizer=adam").optimizer.lr == 0.001  # not SGD's 1.0
    assert make_cfg("experiment=mnist_lstm", "optimizer=sgd").optimizer.lr == 0.1  # not Adam's 0.01
    assert make_cfg("experiment=imdb_lstm", "optimizer=adam", "optimizer.lr=0.02").optimizer.lr == 0.02


def test_no_experiment_sets_one_learning_rate_for_every_optimizer():
    from omegaconf import OmegaConf

    from seqlab.config import CONF_DIR

    for path in sorted(Path(CONF_DIR, "experiment").glob("*.yaml")):
        node = OmegaConf.load(path)
        assert "lr" not in (node.get("optimizer") or {}), (
            f"{path.name}: use optimizer_lr: {{<optimizer>: lr}}"
        )


def test_ptb_streams_are_cut_the_same_for_evaluation_on_any_device_count(data_dir):
    class Rank:
        def __init__(self, rank, world):
            self.global_rank, self.world_size = rank, world

    dm = ptb.PTBDataModule(str(data_dir), batch_size=2, seq_len=5, eval_batch_size=5)
    dm.setup()
    whole = dm._streams("val")
    for world in (2, 3):
        parts = []
        for rank in range(world):
            dm.trainer = Rank(rank, world)
            parts.append(dm._streams("val"))
        assert torch.equal(torch.cat(parts), whole)
