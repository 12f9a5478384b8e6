"""The recipes the entry points call: `train` (fit, then validate and test the best checkpoint) and
`evaluate` (a checkpoint on its splits). The pieces come from `seqlab.build`, checkpoints are read by
`seqlab.restore`, and `seqlab.rundir` decides what a run dir allows (resume, refuse, skip finished).
`distributed_job` lets a sweep's jobs run DDP one after the other in one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from seqlab.atomic import write_text_atomic
from seqlab.build import (
    build_callbacks,
    build_datamodule,
    build_group,
    build_task,
    build_trainer,
    instantiate,
    seed,
)
from seqlab.callbacks.preemption import SignalCheckpoint
from seqlab.compat import StopTraining, quiet_library_notices
from seqlab.config import flatten
from seqlab.errors import ConfigError, DataError
from seqlab.models.eval_time import eval_time_metrics
from seqlab.models.language_model import LanguageModelNet
from seqlab.resources import OutOfMemoryReport, check_batches_fit, out_of_memory_reported
from seqlab.restore import check_state_fits, restore_from_checkpoint
from seqlab.results import whole_history
from seqlab.rundir.records import (
    STOPPED,
    accept_config_records,
    last_checkpoint,
    read_metrics,
    write_machine,
    write_metrics,
)
from seqlab.rundir.resume import resume_checkpoint
from seqlab.trackers import log_outcome, log_stopped

log = logging.getLogger(__name__)


@contextlib.contextmanager
def distributed_job() -> Iterator[None]:
    """Run one job's DDP work so that the next job of a sweep, in the same process, starts clean.

    Inside a multirun, Lightning's DDP launcher would start the other ranks with this process's
    command line, i.e. the whole sweep again: for the length of the job the command line becomes
    this job's own overrides and `hydra.run.dir` its output dir. Afterwards the process group is
    destroyed and the environment variables Lightning set (LOCAL_RANK, MASTER_PORT...) are removed,
    or the next job would take itself for a child rank of this one.
    """
    environ = dict(os.environ)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        hydra_cfg = HydraConfig.get()
        argv, run_dir = sys.argv, hydra_cfg.run.dir
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
        with open_dict(hydra_cfg), read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if multirun:
            sys.argv = argv
            with open_dict(hydra_cfg), read_write(hydra_cfg):
                hydra_cfg.run.dir = run_dir
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            os.environ.clear()
            os.environ.update(environ)


def to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def select_metric(metrics: dict[str, float], name: str | None) -> float | None:
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name!r} was not logged; logged metrics: {', '.join(sorted(metrics))}"
        )
    return metrics[name]


def train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    """Train, then validate and test the best checkpoint; write metrics.json; return the optimized metric.

    A run dir that already holds metrics.json is a finished run: its metrics are returned, nothing is
    retrained (so rerunning a sweep only runs its failed or missing jobs).
    """
    finished = finished_metrics(cfg.paths.output_dir)
    if finished is not None and not cfg.get("ckpt_path"):
        log.info("%s holds a finished run (metrics.json): not training it again", cfg.paths.output_dir)
        return select_metric(finished, cfg.get("optimized_metric")), finished
    seed(cfg)
    datamodule = build_datamodule(cfg)
    task = build_task(cfg, datamodule)
    ckpt_path, checkpoint = resume_checkpoint(cfg) or (None, None)
    if checkpoint is not None:
        check_state_fits(task, checkpoint["state_dict"], f"ckpt_path={ckpt_path!r}")
        del checkpoint  # only checked here: Lightning's fit reads the file itself, not kept through training
    out_of_memory = OutOfMemoryReport(cfg)
    trainer = build_trainer(cfg, task, [*build_callbacks(cfg), out_of_memory], build_group(cfg, "logger"))
    check_batches_fit(task.batch_memory(cfg.data), trainer.strategy.root_device)
    accept_config_records()  # everything checked: this start's config records stand
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams(task.run_info["config"]))

    start = time.perf_counter()
    with distributed_job(), out_of_memory_reported(out_of_memory), signals_held(trainer):
        fit_stoppable(trainer, task, datamodule, ckpt_path, cfg.paths.output_dir)
        metrics = {"train/loss": final_train_loss(trainer, cfg.paths.output_dir)}
        with stopped_as_error(
            trainer, " (after training: the final validation and test run on resume)", cfg.paths.output_dir
        ):
            stop_if_signalled(trainer)  # a signal at the end of training: before the final phase
            metrics |= score_best_checkpoint(trainer, task, datamodule, test=cfg.get("test", True))
        metrics["wall_time_s"] = time.perf_counter() - start
        if trainer.is_global_zero:
            log_final_hparams(trainer, hparams(task.run_info["config"]), metrics)
            log.info("Metrics written to %s", write_metrics(metrics, cfg.paths.output_dir))
            write_machine(cfg.paths.output_dir)
            log_outcome(trainer.loggers, metrics, best_checkpoint(trainer), trainer.global_step)
    return select_metric(metrics, cfg.get("optimized_metric")), metrics


def finished_metrics(output_dir: str) -> dict[str, float] | None:
    """metrics.json of a finished run; a damaged one is set aside (`metrics.json.damaged`) with one line,
    and the run counts as not finished (resume=true continues it from its checkpoints)."""
    try:
        return read_metrics(output_dir)
    except DataError as err:
        damaged = Path(output_dir) / "metrics.json"
        damaged.replace(damaged.with_name("metrics.json.damaged"))
        log.warning("%s; kept as metrics.json.damaged, the run counts as unfinished", str(err).split(";")[0])
        return None


def final_train_loss(trainer: L.Trainer, output_dir: str) -> float:
    """The last epoch's train/loss: logged in this process, or, for a run resumed after its last epoch
    (stopped in the final phase), the last row of its history.csv."""
    if "train/loss" in trainer.callback_metrics:
        return float(trainer.callback_metrics["train/loss"])
    rows = whole_history(Path(output_dir) / "history.csv")
    return float(rows[-1].get("train/loss", float("nan"))) if rows else float("nan")


def signal_checkpoints(trainer: L.Trainer) -> list[SignalCheckpoint]:
    return [c for c in trainer.callbacks if isinstance(c, SignalCheckpoint)]


@contextlib.contextmanager
def signals_held(trainer: L.Trainer) -> Iterator[None]:
    """The stop signals stay with SignalCheckpoint from fit to the end of the final test, then go back."""
    try:
        yield
    finally:
        for callback in signal_checkpoints(trainer):
            callback.release()


def stop_if_signalled(trainer: L.Trainer) -> None:
    if any(c.signalled is not None for c in signal_checkpoints(trainer)):
        raise StopTraining()


@contextlib.contextmanager
def stopped_as_error(trainer: L.Trainer, where: str, output_dir: str) -> Iterator[None]:
    """A stop signal (see SignalCheckpoint) ends the process with one line naming where and the resume."""
    try:
        yield
    except StopTraining:  # Lightning's way out on SIGTERM, SignalCheckpoint's on every stop signal
        message = (
            f"error: {STOPPED} at epoch {trainer.current_epoch}, step {trainer.global_step}{where}; "
            f"resume=true continues from {last_checkpoint(output_dir)}"
        )
        log.info(message)
        log_stopped(trainer.loggers)
        for callback in signal_checkpoints(trainer):
            callback.hand_over()  # a scheduler's handler may requeue the job and exit here
        raise SystemExit(message) from None


def fit_stoppable(
    trainer: L.Trainer,
    task: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
    output_dir: str,
) -> None:
    """`trainer.fit`; a stop signal ends the process with an error naming the resume."""
    with stopped_as_error(trainer, "", output_dir):
        trainer.fit(task, datamodule, ckpt_path=ckpt_path, weights_only=True)


def score_best_checkpoint(
    trainer: L.Trainer, task: L.LightningModule, datamodule: L.LightningDataModule, test: bool = True
) -> dict[str, float]:
    """Validation (and with `test`, test) metrics of the best checkpoint (the final weights when none
    was saved). A search runs with test=false: it chooses on validation and never reads the test set."""
    best = best_checkpoint(trainer)
    if best is None:
        log.warning(
            "No checkpoint was saved (fast_dev_run or checkpointing off): evaluating the final weights."
        )
    metrics = to_floats(trainer.validate(task, datamodule, ckpt_path=best, weights_only=True)[0])
    if not test:
        return metrics
    return metrics | to_floats(trainer.test(task, datamodule, ckpt_path=best, weights_only=True)[0])


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The monitoring checkpoint callback's (callbacks.model_checkpoint) best file, wherever it is listed."""
    monitoring = [cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)]
    return (monitoring[0].best_model_path if monitoring else "") or None


def log_final_hparams(trainer: L.Trainer, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """TensorBoard's HParams tab: the run's config beside its final val/test metrics (`final/<name>`)."""
    finals = {f"final/{k}": v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and finals:
            logger.log_hyperparams(params, metrics=finals, step=trainer.global_step)
            logger.finalize("success")


def fit(cfg: DictConfig) -> dict[str, float]:
    """Train a config composed in Python (`seqlab.compose`) as `python -m seqlab.train` trains it: its run
    dir gets the same records (`.hydra/config.yaml`, `.hydra/overrides.yaml`), so `seqlab.runs` reads it
    beside runs from the command line. Returns the final metrics; a user error raises (ConfigError...)."""
    quiet_library_notices()
    records = Path(cfg.paths.output_dir) / ".hydra"
    records.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    write_text_atomic(records / "config.yaml", OmegaConf.to_yaml(config))
    overrides = list(cfg.hydra.overrides.task) if "hydra" in cfg else []
    write_text_atomic(records / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return train(cfg)[1]


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a checkpoint on the configured splits with the model and data it was trained with."""
    unknown = [split for split in cfg.splits if split not in ("val", "test")]
    if unknown or not cfg.splits:
        raise ConfigError(
            f"splits={list(cfg.splits)}: allowed splits are val and test, e.g. splits=[val,test]"
        )
    seed(cfg)
    run_cfg, datamodule, task = restore_from_checkpoint(
        cfg.ckpt_path, cfg.paths.data_dir, cfg.get("trusted_packages") or ()
    )
    options = {
        k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in ("cache", "dynamic_eval")
        if cfg.get(k) is not None
    }
    if options and not (isinstance(task.net, LanguageModelNet) and hasattr(datamodule, "ids")):
        raise ConfigError(
            f"{' and '.join(options)}: cache and dynamic_eval apply to word-level language models; "
            f"ckpt_path holds a {type(task).__name__}"
        )
    trainer = instantiate(cfg.trainer, "trainer", logger=False)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "val" else trainer.test
        metrics |= to_floats(run(task, datamodule)[0])
    if options:  # on one stream per split, in order; settings chosen on val (models/eval_time.py)
        datamodule.setup("test")
        streams = {split: datamodule.ids[split].to(task.device) for split in ("val", "test")}
        metrics |= eval_time_metrics(task.net, streams, options.get("cache"), options.get("dynamic_eval"))
    log.info("Metrics written to %s", write_metrics(metrics, cfg.paths.output_dir))
    return metrics


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config as TensorBoard's HParams tab takes it: {"a/b": value}, lists as their text."""
    return {k: str(v) if isinstance(v, list) else v for k, v in flatten(config).items()}
