"""How a task's weights are updated: optimizer, learning-rate schedule, gradient clipping and accumulation,
read from the composed config in one place (`optimization_config`) and carried by one object.

Where a learning rate comes from: `conf/optimizer/<name>.yaml` is a `_partial_` constructor whose `lr`
is the experiment's `optimizer_lr.<name>` (one measured rate per optimizer, so `optimizer=sgd` on the
command line gets SGD's rate, not Adam's), else the file's default; `optimizer.lr=...` overrides both.
The scheduler group is a `_partial_` constructor too, plus when Lightning steps it (`interval`) and what
a plateau schedule watches (`monitor`), split off here. Clipping and accumulation are the trainer's
settings: Lightning applies them under automatic optimization, the language models (manual
optimization) read them from here.

Parameter groups are decided here, once, for every optimizer (`parameter_groups`): by default, as in
nanoGPT, matrices take the optimizer's weight decay and vectors (biases, norms' scales, the diagonal
cells' recurrent weights) take none; any module may say otherwise for its own parameters with an
`optimizer_settings()` method returning {parameter name: {"decay": bool, "lr_scale": float}} (the LRU:
no decay and half the rate on nu, theta, gamma, as its paper's code trains them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seqlab.checks import check_choice, check_positive, check_positive_number_or_null

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
SCHEDULER_OPTIONS = ("interval", "monitor")  # Lightning's, in the scheduler group beside the constructor's
log = logging.getLogger(__name__)


def parameter_groups(model: torch.nn.Module, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """`model`'s trainable parameters in groups of equal treatment: {"params", "names", "decay",
    "lr_scale"}, plus `weight_decay: 0.0` where decay is off. Decay only splits groups when
    `weight_decay` is not 0, so a model without settings keeps one group."""
    settings: dict[str, dict[str, Any]] = {}
    for prefix, module in model.named_modules():
        own = getattr(module, "optimizer_settings", None)
        if callable(own):
            settings.update({f"{prefix}.{k}" if prefix else k: v for k, v in own().items()})
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        chosen = {"decay": param.dim() >= 2, "lr_scale": 1.0, **settings.get(name, {})}
        decay = bool(chosen["decay"]) or weight_decay == 0  # nothing to switch off
        group = groups.setdefault(
            (decay, float(chosen["lr_scale"])),
            {"params": [], "names": [], "decay": decay, "lr_scale": float(chosen["lr_scale"])},
        )
        group["params"].append(param)
        group["names"].append(name)
    for group in groups.values():
        if not group["decay"]:
            group["weight_decay"] = 0.0
    return list(groups.values())


def describe_groups(optimizer: torch.optim.Optimizer) -> str:
    """One line: each group's tensors, weights, weight decay and learning rate."""
    parts = []
    for group in optimizer.param_groups:
        size = sum(p.numel() for p in group["params"])
        names = group.get("names") or []
        shown = ", ".join(n.removeprefix("net.") for n in names[:2]) + (", ..." if len(names) > 2 else "")
        parts.append(
            f"{len(group['params'])} tensors ({size:,} weights; {shown}): weight_decay "
            f"{group.get('weight_decay', 0.0):g}, lr {group['lr']:g}"
        )
    return f"{type(optimizer).__name__} parameter groups: " + "; ".join(parts)


@dataclass(frozen=True)
class Optimization:
    optimizer: OptimizerFactory | None = None
    scheduler: SchedulerFactory | None = None
    interval: str = "epoch"  # the scheduler steps every epoch | step
    monitor: str = "val/loss"  # what a ReduceLROnPlateau scheduler watches
    gradient_clip_val: float | None = None  # the gradient norm's bound
    accumulate_grad_batches: int = 1

    def __post_init__(self) -> None:
        check_choice("scheduler.interval", self.interval, ("epoch", "step"))
        check_positive_number_or_null(**{"trainer.gradient_clip_val": self.gradient_clip_val})
        check_positive(**{"trainer.accumulate_grad_batches": self.accumulate_grad_batches})

    def configure(self, model: torch.nn.Module, automatic: bool = True) -> Any:
        """What a LightningModule's `configure_optimizers` returns: the optimizer bound to `model`'s
        parameter groups (`parameter_groups`), with its scheduler when there is one."""
        if self.optimizer is None:
            raise ValueError(
                "no optimizer configured: choose one with optimizer=<name> (see conf/optimizer/)"
            )
        keywords = getattr(self.optimizer, "keywords", {})
        optimizer = self.optimizer(params=parameter_groups(model, keywords.get("weight_decay") or 0.0))
        for group in optimizer.param_groups:  # before any scheduler reads the rates
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer)
        config = {"scheduler": scheduler, "interval": self.interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and automatic:
            config["monitor"] = self.monitor  # manual tasks step their schedulers themselves
        return {"optimizer": optimizer, "lr_scheduler": config}


def optimization_config(cfg: DictConfig) -> dict[str, Any]:
    """The `Optimization` node that `hydra.utils.instantiate` turns into the task's `optimization`."""
    # Resolved here, where `optimizer_lr` is in reach: interpolations would not resolve inside the model node.
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True) if cfg.get("optimizer") else None
    schedule = OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else {}
    options = {k: schedule.pop(k) for k in SCHEDULER_OPTIONS if k in schedule}
    trainer = cfg.get("trainer") or {}
    return {
        "_target_": f"{__name__}.Optimization",
        "optimizer": optimizer,
        "scheduler": schedule or None,
        **options,
        "gradient_clip_val": trainer.get("gradient_clip_val"),
        "accumulate_grad_batches": trainer.get("accumulate_grad_batches", 1),
    }
