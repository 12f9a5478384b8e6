"""The seqlab path under test: a trimmed experiment config, its data module, fit() and validate() on
fixed batches, the start-up of a fresh process, and the comparison against a plain loop."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader

from benchlib.timing import Comparison, LoopTimer, Timing, alternate, synchronize
from seqlab import build
from seqlab.config import CONF_DIR, project_root

DEFAULT_DATA_DIR = os.environ.get("SEQLAB_DATA_DIR", str(project_root() / "data"))
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def bench_cfg(experiment: str, data_dir: str, out: str, *overrides: str) -> DictConfig:
    """The experiment's config, trimmed to the training loop: no validation, checkpoints, logger or bar."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"experiment={experiment}", f"paths.data_dir={data_dir}", *overrides]
        )
    with open_dict(cfg):
        cfg.paths.output_dir = out
        cfg.trainer.update(
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            max_epochs=1,
            num_sanity_val_steps=0,
        )
        # Every callback with per-step hooks runs; the two ModelCheckpoints (which save at epoch ends)
        # do not. EpochHistory is a Lightning Checkpoint, hence enable_checkpointing.
        cfg.callbacks = {
            k: v for k, v in cfg.callbacks.items() if not str(v.get("_target_")).endswith("ModelCheckpoint")
        }
        cfg.trainer.enable_checkpointing = True
        cfg.logger = {}
    return cfg


def prepared_datamodule(cfg: DictConfig):
    datamodule = build.build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def serving(datamodule, batches: list):
    """The (set-up) data module serving `batches` as its training and validation data: a run on them takes
    its batch-transfer hook (IMDB's keeps the mask on the host) as a real run does."""
    served = copy.copy(datamodule)
    served.train_dataloader = served.val_dataloader = lambda: DataLoader(batches, batch_size=None)
    served.prepare_data = served.setup = lambda *args, **kwargs: None
    return served


def lightning_fit(cfg: DictConfig, datamodule, init_state: dict, batches: list) -> tuple[Timing, object]:
    """The seqlab path training on `batches` from the given initial weights: its timing, and the task."""
    task = build.build_task(cfg, datamodule)
    task.net.load_state_dict(init_state)
    timer = LoopTimer()
    trainer = build.build_trainer(cfg, task, [*build.build_callbacks(cfg), timer], [])
    start = time.perf_counter()
    trainer.fit(task, datamodule=serving(datamodule, batches))
    synchronize()
    return Timing(timer.seconds["train"], time.perf_counter() - start, timer.steady_s), task


def lightning_validate(cfg: DictConfig, datamodule, task, batches: list) -> Timing:
    """The seqlab path evaluating `batches` with the task's metrics (a classifier: loss, accuracy, F1,
    AUROC, confusion matrix; a language model: the exact NLL)."""
    timer = LoopTimer()
    trainer = build.build_trainer(cfg, task, [timer], [])
    trainer.limit_val_batches = 1.0
    start = time.perf_counter()
    trainer.validate(task, datamodule=serving(datamodule, batches), verbose=False)
    synchronize()
    return Timing(timer.seconds["val"], time.perf_counter() - start)


def startup_time(experiment: str, data_dir: str, *overrides: str) -> float:
    """Start-to-exit seconds of `seqlab.train experiment=... debug=fdr` in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "seqlab.train",
                f"experiment={experiment}",
                "debug=fdr",
                f"hydra.run.dir={out}",
                *overrides,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "SEQLAB_DATA_DIR": data_dir},
        )
        return time.perf_counter() - start


def add_common_args(parser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--json", type=Path, help="also write the figures to this file (make bench collects them)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for the benchmarked config, e.g. data.val_size=40"
    )


def compare_with_plain(
    cfg: DictConfig,
    datamodule,
    init_state: dict,
    batches: list,
    val: list,
    plain: Callable[[], tuple[float, float]],
    repeats: int,
    bare: Callable[[], Timing] | None = None,
) -> Comparison:
    """Alternating repeats of the seqlab path (fit on `batches` from `init_state`, then validate on `val`)
    and, twice, of `plain` (its train and eval seconds); with `bare` (its training loop), that too, in
    the same turns, so that seqlab and the bare module can be compared pair by pair."""
    result = Comparison([], [], [], [], [], [])

    def seqlab_run() -> None:
        timing, task = lightning_fit(cfg, datamodule, init_state, batches)
        result.seqlab_train.append(timing)
        result.seqlab_eval.append(lightning_validate(cfg, datamodule, task, val))

    def plain_run(train: list[float], evaluation: list[float]) -> Callable[[], None]:
        def run() -> None:
            train_s, eval_s = plain()
            train.append(train_s)
            evaluation.append(eval_s)

        return run

    runs = [
        plain_run(result.plain_train, result.plain_eval),
        seqlab_run,
        plain_run(result.control_train, result.control_eval),
    ]
    if bare is not None:
        runs.append(lambda: result.bare_train.append(bare()))
    alternate(*runs, repeats=repeats)
    return result
