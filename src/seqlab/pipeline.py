"""Build the pieces of a run from a composed config, train, evaluate, restore from checkpoints.

The Hydra entry points only compose a config and call `train` or `evaluate` here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

import seqlab
from seqlab.callbacks.preemption import SignalCheckpoint
from seqlab.checkpointing import AtomicCheckpointIO, write_text_atomic
from seqlab.config import check_safe_targets
from seqlab.errors import ConfigError
from seqlab.sweeps import STOPPED
from seqlab.tasks.base import TaskModule

log = logging.getLogger(__name__)


def instantiate(node: Any, where: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a constructor's complaint raised as one ConfigError naming the key."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException = err
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        match = re.search(r"full_key: (\S+)", str(err))
        key = match.group(1) if match else where
        key = key if key.startswith(where) else f"{where}.{key}"
        raise ConfigError(f"{key}: {cause}") from None


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return instantiate(cfg.data, "data")


def build_task(cfg: DictConfig, datamodule: L.LightningDataModule) -> TaskModule:
    """The task module with its net sized by the data (`datamodule.dims`), plus run metadata."""
    try:  # reading dims may set the data up: a setting that fails there is named in one line too
        dims = datamodule.dims
    except ValueError as err:
        raise err if isinstance(err, ConfigError) else ConfigError(f"data: {err}") from None
    task = instantiate(
        cfg.model,
        "model",
        net=dims,
        optimizer=cfg.get("optimizer"),
        scheduler=cfg.get("scheduler") or None,
    )
    config = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    task.run_info = {"version": seqlab.__version__, "config": config, "dims": dict(datamodule.dims)}
    try:  # bind the optimizer and scheduler now: a bad lr is named before any data is read
        task.configure_optimizers()
    except (ValueError, TypeError) as err:
        settings = ", ".join(
            f"{group}.{k}={v}"
            for group in ("optimizer", "scheduler")
            for k, v in (cfg.get(group) or {}).items()
            if not k.startswith("_")
        )
        raise ConfigError(f"optimizer/scheduler: {err} ({settings})") from None
    return task


def build_group(cfg: DictConfig, group: str) -> list[Any]:
    """Every entry with a `_target_` in a group of named objects (`callbacks`, `logger`)."""
    nodes = cfg.get(group) or {}
    return [
        instantiate(node, f"{group}.{name}") for name, node in nodes.items() if node and "_target_" in node
    ]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return build_group(cfg, "callbacks")


def build_trainer(cfg: DictConfig, task: TaskModule, callbacks: list, loggers: list) -> L.Trainer:
    trainer_cfg = cfg.trainer
    if not task.automatic_optimization:
        # Lightning refuses clipping and accumulation under manual optimization: the task (given both
        # through its config) does them itself.
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"gradient_clip_val": None, "accumulate_grad_batches": 1})
    trainer = instantiate(trainer_cfg, "trainer", callbacks=callbacks, logger=loggers or False)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # unless the config chose another
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a seqlab checkpoint safely (`weights_only=True`: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={str(path)!r}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "seqlab" not in checkpoint:
        raise ConfigError(
            f"ckpt_path={str(path)!r}: not a seqlab checkpoint (no model state and run metadata)"
        )
    return checkpoint


def check_state_fits(task: TaskModule, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Name every parameter that is missing, unexpected or of another shape, before any work starts."""
    own = task.state_dict()
    problems = [f"missing {k}" for k in own if k not in state_dict]
    problems += [f"unexpected {k}" for k in state_dict if k not in own]
    problems += [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if problems:
        shown = "\n  ".join(problems[:12]) + ("\n  ..." if len(problems) > 12 else "")
        raise ConfigError(
            f"{source} does not fit the model config:\n  {shown}\n"
            "Use the model settings the checkpoint was trained with (its .hydra/config.yaml), or another checkpoint."
        )


def restore_from_checkpoint(
    ckpt_path: str | Path, data_dir: str | None = None
) -> tuple[DictConfig, L.LightningDataModule, TaskModule]:
    """Rebuild the data module and task module that wrote a checkpoint, with its weights loaded.

    Shared by `eval` and every tool that works on a trained model. Only seqlab and torch.optim
    targets of the stored config are instantiated.
    """
    checkpoint = read_checkpoint(ckpt_path)
    run_cfg = OmegaConf.create(checkpoint["seqlab"]["config"])
    for group in ("data", "model", "optimizer", "scheduler"):  # everything build_task instantiates
        check_safe_targets(run_cfg.get(group), group)
    if data_dir is not None:
        with open_dict(run_cfg):
            run_cfg.paths.data_dir = data_dir
            run_cfg.data.data_dir = data_dir
    datamodule = build_datamodule(run_cfg)
    datamodule_state = checkpoint.get(type(datamodule).__qualname__)
    if datamodule_state:
        datamodule.load_state_dict(datamodule_state)
    task = build_task(run_cfg, datamodule)
    check_state_fits(task, checkpoint["state_dict"], f"checkpoint {ckpt_path}")
    task.load_state_dict(checkpoint["state_dict"])
    return run_cfg, datamodule, task


def restore_for_tool(
    cfg: DictConfig, need: str, accepts: Callable[[TaskModule, L.LightningDataModule], bool]
) -> tuple[DictConfig, L.LightningDataModule, TaskModule]:
    """`restore_from_checkpoint` of a tool's `ckpt_path`, reading data from its `paths.data_dir` (as eval
    does), refusing a checkpoint of a task the tool cannot use with `need` as the reason."""
    ckpt_path = cfg.ckpt_path
    run_cfg, datamodule, task = restore_from_checkpoint(ckpt_path, cfg.paths.data_dir)
    if not accepts(task, datamodule):
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} holds a {type(task).__name__} ({run_cfg.get('task_name')}); {need}"
        )
    return run_cfg, datamodule, task


def to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def write_metrics(metrics: dict[str, float], output_dir: str | Path) -> Path:
    return write_text_atomic(
        Path(output_dir) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )


def select_metric(metrics: dict[str, float], name: str | None) -> float | None:
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name!r} was not logged; logged metrics: {', '.join(sorted(metrics))}"
        )
    return metrics[name]


def seed(cfg: DictConfig) -> None:
    if cfg.get("seed") is not None:  # seed=0 is a seed like any other
        L.seed_everything(int(cfg.seed), workers=True)


def read_metrics(output_dir: str | Path) -> dict[str, float] | None:
    path = Path(output_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint training starts from: `ckpt_path`, else the run dir's last.ckpt when resuming.

    A SLURM requeue (SLURM_RESTART_COUNT > 0) resumes as `resume=true` does. Without either, a run
    dir that already holds checkpoints is refused rather than overwritten.
    """
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    if cfg.get("resume") or requeued:
        if last.is_file():
            log.info("Resuming from %s", last)
            return str(last)
        # A requeue before the first checkpoint must start from scratch; a mistyped run dir should not
        # pass unnoticed, so this is a warning that names the dir.
        log.warning(
            "resume: %s holds no checkpoints/last.ckpt: training from scratch. If you meant to continue "
            "another run, give its run_name=... (or hydra.run.dir=...)",
            cfg.paths.output_dir,
        )
        return None
    if last.exists():
        raise ConfigError(
            f"{cfg.paths.output_dir} already holds the checkpoints of an earlier run: resume=true continues "
            "it; another run_name=... (or hydra.run.dir=...) starts a new one"
        )
    return None


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


def train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    """Train, then validate and test the best checkpoint; write metrics.json; return the optimized metric.

    A run dir that already holds metrics.json is a finished run: its metrics are returned, nothing is
    retrained (so rerunning a sweep only runs its failed or missing jobs).
    """
    finished = read_metrics(cfg.paths.output_dir)
    if finished is not None and not cfg.get("ckpt_path"):
        log.info("%s holds a finished run (metrics.json): not training it again", cfg.paths.output_dir)
        return select_metric(finished, cfg.get("optimized_metric")), finished
    seed(cfg)
    datamodule = build_datamodule(cfg)
    task = build_task(cfg, datamodule)
    ckpt_path = resume_checkpoint(cfg)
    if ckpt_path:
        check_state_fits(task, read_checkpoint(ckpt_path)["state_dict"], f"ckpt_path={ckpt_path!r}")
    trainer = build_trainer(cfg, task, build_callbacks(cfg), build_group(cfg, "logger"))
    for logger in trainer.loggers:
        logger.log_hyperparams(flatten(task.run_info["config"]))

    start = time.perf_counter()
    with distributed_job():
        try:
            trainer.fit(task, datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:  # Lightning's way out on SIGTERM (SignalCheckpoint's on SIGUSR1/2 too)
            message = (
                f"error: {STOPPED} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                f"resume=true continues from {Path(cfg.paths.output_dir) / 'checkpoints' / 'last.ckpt'}"
            )
            log.info(message)
            for callback in trainer.callbacks:
                if isinstance(callback, SignalCheckpoint):
                    callback.hand_over()  # a scheduler's handler may requeue the job and exit here
            raise SystemExit(message) from None
        metrics = {"train/loss": float(trainer.callback_metrics.get("train/loss", float("nan")))}
        if cfg.get("test", True):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "")
            if not best:
                log.warning(
                    "No checkpoint was saved (fast_dev_run or checkpointing off): evaluating the final weights."
                )
            best = best or None
            metrics |= to_floats(trainer.validate(task, datamodule, ckpt_path=best, weights_only=True)[0])
            metrics |= to_floats(trainer.test(task, datamodule, ckpt_path=best, weights_only=True)[0])
        metrics["wall_time_s"] = time.perf_counter() - start
        if trainer.is_global_zero:
            log_final_hparams(trainer, flatten(task.run_info["config"]), metrics)
            log.info("Metrics written to %s", write_metrics(metrics, cfg.paths.output_dir))
    return select_metric(metrics, cfg.get("optimized_metric")), metrics


def log_final_hparams(trainer: L.Trainer, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """TensorBoard's HParams tab: the run's config beside its final val/test metrics (`final/<name>`)."""
    finals = {f"final/{k}": v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and finals:
            logger.log_hyperparams(params, metrics=finals, step=trainer.global_step)
            logger.finalize("success")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a checkpoint on the configured splits with the model and data it was trained with."""
    unknown = [split for split in cfg.splits if split not in ("val", "test")]
    if unknown or not cfg.splits:
        raise ConfigError(
            f"splits={list(cfg.splits)}: allowed splits are val and test, e.g. splits=[val,test]"
        )
    seed(cfg)
    run_cfg, datamodule, task = restore_from_checkpoint(cfg.ckpt_path, cfg.paths.data_dir)
    trainer = instantiate(cfg.trainer, "trainer", logger=False)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "val" else trainer.test
        metrics |= to_floats(run(task, datamodule)[0])
    log.info("Metrics written to %s", write_metrics(metrics, cfg.paths.output_dir))
    return metrics


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a/b": scalar} for TensorBoard's HParams tab."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= flatten(v, f"{prefix}/{k}" if prefix else str(k))
        return out
    if isinstance(node, list):
        return {prefix: str(node)}
    return {prefix: node}
