"""Build a run's pieces from a composed config: data module, task module, callbacks, loggers, trainer."""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import re
import shutil
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

import seqlab
from seqlab.compat import instantiation_error_key
from seqlab.errors import ConfigError
from seqlab.models.registry import cell_spec, encoder_entry
from seqlab.optimization import optimization_config
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
            missing = missing_attribute(target.group(1)) if target else None
            if missing:
                raise ConfigError(f"{key}._target_={target.group(1)!r}: {missing}") from None
            raise ConfigError(
                f"{key}._target_={target.group(1) if target else '?'!r} cannot be imported ({reason}); "
                "install the package that defines it (pip install -e <your project>) or fix the name"
            ) from None
        if isinstance(cause, ConfigError) and str(cause).startswith(key):
            raise cause from None  # it names the key already
        raise ConfigError(f"{key}: {cause}") from None


def missing_attribute(target: str) -> str | None:
    """For a `_target_` whose module imports but lacks the name: what the module does define."""
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception:  # the module itself is what cannot be imported: Hydra's reason stands
        return None
    if hasattr(module, name):
        return None
    defined = sorted(
        k for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name
    )
    return f"module {module_name} has no {name!r}" + (f"; it defines {', '.join(defined)}" if defined else "")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module; one whose constructor takes `shuffle_seed` and whose config does not set it
    follows the run's `seed` (so that every seed of a sweep sees its own batch order)."""
    node = cfg.data
    if "shuffle_seed" not in node and takes_argument(node.get("_target_"), "shuffle_seed"):
        return instantiate(node, "data", shuffle_seed=cfg.get("seed"))
    return instantiate(node, "data")


def takes_argument(target: str | None, name: str) -> bool:
    try:
        return name in inspect.signature(hydra.utils.get_class(target)).parameters if target else False
    except Exception:  # not importable: instantiate names the problem
        return False


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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, fsync, then rename over it.

    A kill at any moment leaves either the old checkpoint or the new one, never a truncated file
    (the rename is atomic on POSIX file systems; the fsyncs make it survive a power cut too).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except RuntimeError as err:  # torch's writer reports a failed file write as its own RuntimeError
            full = shutil.disk_usage(path.parent).free < (1 << 20)
            raise OSError(
                errno.ENOSPC if full else errno.EIO, "could not write the checkpoint", str(path)
            ) from err
        except OSError as err:  # a flush or fsync names no file: name the checkpoint being written
            if err.filename:
                raise
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def build_trainer(cfg: DictConfig, task: TaskModule, callbacks: list, loggers: list) -> L.Trainer:
    trainer_cfg = cfg.trainer
    if trainer_cfg.get("max_epochs") == 0 and not (trainer_cfg.get("max_steps") or -1) > 0:
        raise ConfigError(
            "trainer.max_epochs=0 trains nothing (and would score the untrained model as the run's result): "
            "give 1 or more, or score a checkpoint with python -m seqlab.eval"
        )
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
