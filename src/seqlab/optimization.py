"""How a task's weights are updated: optimizer, learning-rate schedule, gradient clipping and accumulation,
read from the composed config in one place (`optimization_config`) and carried by one object.

Where a learning rate comes from: `conf/optimizer/<name>.yaml` is a `_partial_` constructor whose `lr`
is the experiment's `optimizer_lr.<name>` (one measured rate per optimizer, so `optimizer=sgd` on the
command line gets SGD's rate, not Adam's), else the file's default; `optimizer.lr=...` overrides both.
The scheduler group is a `_partial_` constructor too, plus when Lightning steps it (`interval`) and what
a plateau schedule watches (`monitor`), split off here. Clipping and accumulation are the trainer's
settings: Lightning applies them under automatic optimization, the language models (manual
optimization) read them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seqlab.checks import check_choice, check_positive, check_positive_number_or_null

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
SCHEDULER_OPTIONS = ("interval", "monitor")  # Lightning's, in the scheduler group beside the constructor's


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

    def configure(self, params: Iterable[torch.nn.Parameter], automatic: bool = True) -> Any:
        """What a LightningModule's `configure_optimizers` returns: the optimizer bound to `params`, with
        its scheduler when there is one."""
        if self.optimizer is None:
            raise ValueError(
                "no optimizer configured: choose one with optimizer=<name> (see conf/optimizer/)"
            )
        optimizer = self.optimizer(params=params)
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
