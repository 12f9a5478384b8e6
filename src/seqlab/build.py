"""Build a run's pieces from a composed config: data module, task module, callbacks, loggers, trainer."""

from __future__ import annotations

import re
from typing import Any

import hydra
import lightning as L
from hydra.errors import InstantiationException
from lightning.fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

import seqlab
from seqlab.compat import instantiation_error_key
from seqlab.errors import ConfigError
from seqlab.models.registry import cell_spec, encoder_entry
from seqlab.optimization import optimization_config
from seqlab.rundir.checkpoints import AtomicCheckpointIO
from seqlab.tasks.base import TaskModule


def instantiate(node: Any, where: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a constructor's complaint raised as one ConfigError naming the key."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException = err
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        key = instantiation_error_key(str(err)) or where
        key = key if key.startswith(where) else f"{where}.{key}"
        if isinstance(cause, ImportError):  # Hydra's three lines about a `_target_` it cannot import
            target = re.search(r"'([^']+)'", str(cause))
            reason = str(cause).splitlines()[1] if "\n" in str(cause) else str(cause)
            raise ConfigError(
                f"{key}._target_={target.group(1) if target else '?'!r} cannot be imported ({reason}); "
                "install the package that defines it (pip install -e <your project>) or fix the name"
            ) from None
        if isinstance(cause, ConfigError) and str(cause).startswith(key):
            raise cause from None  # it names the key already
        raise ConfigError(f"{key}: {cause}") from None


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return instantiate(cfg.data, "data")


def build_task(cfg: DictConfig, datamodule: L.LightningDataModule) -> TaskModule:
    """The task module with its net sized by the data (`datamodule.dims`), plus run metadata."""
    try:  # reading dims may set the data up: a setting that fails there is named in one line too
        dims = datamodule.dims
    except ValueError as err:
        raise err if isinstance(err, ConfigError) else ConfigError(f"data: {err}") from None
    cell = cfg.model.get("net", {}).get("cell")
    entry = None if cell is None else encoder_entry(cell_spec(cell)[0])  # a name, before Hydra reads `cell`
    task = instantiate(cfg.model, "model", net=dims, optimization=optimization_config(cfg))
    config = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    task.run_info = {"version": seqlab.__version__, "config": config, "dims": dict(datamodule.dims)}
    if entry is not None:  # restoring looks this name up in the registry (and names the provider if absent)
        task.run_info["encoder"] = entry.record()
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
        # Lightning refuses clipping and accumulation under manual optimization: the task does them
        # itself, as its `optimization` says.
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"gradient_clip_val": None, "accumulate_grad_batches": 1})
    trainer = instantiate(trainer_cfg, "trainer", callbacks=callbacks, logger=loggers or False)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # unless the config chose another
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer


MAX_SEED = 2**32 - 1  # numpy's and Lightning's bound


def seed(cfg: DictConfig) -> None:
    value = cfg.get("seed")
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(
            f"seed={value!r}: a seed is an integer from 0 to {MAX_SEED} (or null for a random one)"
        )
    L.seed_everything(value, workers=True)  # seed=0 is a seed like any other
