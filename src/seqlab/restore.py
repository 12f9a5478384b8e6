"""Rebuild the data module and task module that wrote a checkpoint: for eval, the tools and resumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.build import build_datamodule, build_task
from seqlab.compat import datamodule_state_key
from seqlab.config import check_safe_targets, trusted_packages
from seqlab.errors import ConfigError
from seqlab.models.registry import cell_spec, encoder_entry, encoder_names, qualified_name
from seqlab.tasks.base import TaskModule


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a seqlab checkpoint safely (`weights_only=True`: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [""])[0]  # torch's own reasons run to a dozen lines
        raise ConfigError(
            f"ckpt_path={str(path)!r}: not a readable checkpoint ({type(err).__name__}: {first_line})"
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
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ConfigError(
            f"{source} does not fit the model config ({shown}): use the model settings the checkpoint was "
            "trained with (its .hydra/config.yaml), or another checkpoint"
        )


# Settings older checkpoints stored where the current code takes them from elsewhere: (group, key).
MOVED_SETTINGS = (
    ("model", "gradient_clip_val"),  # copies of the trainer's, which seqlab.optimization reads now
    ("model", "accumulate_grad_batches"),
)


# A cell's own settings that older checkpoints stored beside `cell` on the net; they sit in the cell node now.
MOVED_CELL_SETTINGS = ("pack", "num_heads", "positions", "context")


def upgraded_cell(net: DictConfig) -> None:
    """An older net node's cell as the registry names it: its settings moved into `cell`, and a cell
    stored by import path (`{_target_: pkg.Cell, _partial_: true}`) named by its registered name."""
    cell = net.get("cell")
    if isinstance(cell, DictConfig) and "_target_" in cell:
        target = cell["_target_"]
        entry = next(
            (e for e in map(encoder_entry, encoder_names()) if qualified_name(e.build) == target), None
        )
        if entry is None:
            raise ConfigError(
                f"model.net.cell._target_={target!r}: this checkpoint names its cell by import path; register "
                "that class by name (seqlab.encoders entry point or seqlab.register_encoder) to restore it"
            )
        cell = entry.name
    name = cell_spec(cell)[0] if cell is not None else None
    moved = {k: net.pop(k) for k in MOVED_CELL_SETTINGS if k in net}
    if name is None:
        return
    own = encoder_entry(name).settings()
    kept = {k: v for k, v in moved.items() if k in own and v != own[k]}
    net["cell"] = {"name": name, **cell_spec(cell)[1], **kept} if kept or not isinstance(cell, str) else cell


def upgraded(run_cfg: DictConfig) -> DictConfig:
    """A stored config as the current code builds it: copies that older checkpoints kept are dropped,
    settings that moved are moved."""
    with open_dict(run_cfg):
        for group, key in MOVED_SETTINGS:
            if group in run_cfg and key in run_cfg[group]:
                run_cfg[group].pop(key)
        net = run_cfg.get("model", {}).get("net")
        if isinstance(net, DictConfig):
            upgraded_cell(net)
    return run_cfg


def restore_from_checkpoint(
    ckpt_path: str | Path, data_dir: str | None = None, trusted: Iterable[str] = ()
) -> tuple[DictConfig, L.LightningDataModule, TaskModule]:
    """Rebuild the data module and task module that wrote a checkpoint, with its weights loaded.

    Shared by `eval` and every tool that works on a trained model. Only targets of the stored config
    in seqlab, torch.optim and the `trusted` packages (see `trusted_packages`) are instantiated.
    """
    checkpoint = read_checkpoint(ckpt_path)
    stored = checkpoint["seqlab"].get("encoder")
    if stored:  # the cell by the name it was saved under, from whatever package registers it here
        encoder_entry(stored["name"], stored)
    run_cfg = upgraded(OmegaConf.create(checkpoint["seqlab"]["config"]))
    trusted = trusted_packages(trusted)
    for group in ("data", "model", "optimizer", "scheduler"):  # everything build_task instantiates
        check_safe_targets(run_cfg.get(group), group, trusted)
    if data_dir is not None:
        with open_dict(run_cfg):
            run_cfg.paths.data_dir = data_dir
            if "data_dir" in run_cfg.data:  # a generated data set (a user's, say) reads no files
                run_cfg.data.data_dir = data_dir
    datamodule = build_datamodule(run_cfg)
    datamodule_state = checkpoint.get(datamodule_state_key(datamodule))
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
    run_cfg, datamodule, task = restore_from_checkpoint(
        ckpt_path, cfg.paths.data_dir, cfg.get("trusted_packages") or ()
    )
    if not accepts(task, datamodule):
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} holds a {type(task).__name__} ({run_cfg.get('task_name')}); {need}"
        )
    return run_cfg, datamodule, task
