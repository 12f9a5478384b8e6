"""How a task's weights are updated: optimizer, learning-rate schedule, gradient clipping and accumulation,
read from the composed config in one place (`optimization_config`) and carried by one object.

Where a learning rate comes from: `conf/optimizer/<name>.yaml` is a `_partial_` constructor whose `lr`
is the experiment's `optimizer_lr.<name>` (one measured rate per optimizer, so `optimizer=sgd` on the
command line gets SGD's rate, not Adam's), else the file's default; `optimizer.lr=...` overrides both.
The scheduler group is a `_partial_` constructor too; beside it, `lr_schedule` says when Lightning
steps it (`interval`) and what a plateau schedule watches (`monitor`) (configs written before
`lr_schedule` kept both inside the scheduler node: they are read from there). Clipping and accumulation are the trainer's
settings: Lightning applies them under automatic optimization, the language models (manual
optimization) read them from here.

Parameter groups are decided here, once, for every optimizer (`parameter_groups`): by default, as in
nanoGPT, matrices take the optimizer's weight decay and vectors (biases, norms' scales, the diagonal
cells' recurrent weights) take none; any module may say otherwise for its own parameters with an
`optimizer_settings()` method returning {parameter name: {"decay": bool, "lr_scale": float}} (the LRU:
no decay and half the rate on nu, theta, gamma, as its paper's code trains them).

NT-ASGD (non-monotonically triggered averaged SGD, Merity et al. 2017, https://arxiv.org/abs/1708.02182)
is an optimizer here (`optimizer=ntasgd`) whose state holds everything (the trigger, the validation
history, the averages), so a checkpoint resumes it exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from seqlab.errors import check_choice, check_positive, check_positive_number_or_null

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
SCHEDULER_OPTIONS = (
    "interval",
    "monitor",
)  # Lightning's, in `lr_schedule` (or, in older configs, the scheduler node)
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
        check_choice("lr_schedule.interval", self.interval, ("epoch", "step"))
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
    options = dict(cfg.get("lr_schedule") or {})
    options |= {k: schedule.pop(k) for k in SCHEDULER_OPTIONS if k in schedule}  # an older config's
    trainer = cfg.get("trainer") or {}
    return {
        "_target_": f"{__name__}.Optimization",
        "optimizer": optimizer,
        "scheduler": schedule or None,
        **options,
        "gradient_clip_val": trainer.get("gradient_clip_val"),
        "accumulate_grad_batches": trainer.get("accumulate_grad_batches", 1),
    }


class NTASGD(torch.optim.Optimizer):
    """SGD (with weight decay) until the validation loss has not improved on the best of all but its last
    `nonmono` values; from then on, every step also updates `average`, the mean of the iterates since the
    trigger (or, with `start_at`, from that many validations on, whichever comes first). `observe(val_loss)`
    is called once per validation; `swap_average()` exchanges the weights and their average in place
    (call it twice to swap back)."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        weight_decay: float = 0.0,
        nonmono: int = 5,
        start_at: int | None = None,
    ) -> None:
        if lr <= 0 or weight_decay < 0 or nonmono < 1 or (start_at is not None and start_at < 0):
            raise ValueError(
                f"NTASGD: lr={lr} must be > 0, weight_decay={weight_decay} >= 0, nonmono={nonmono} >= 1, "
                f"start_at={start_at} null or >= 0"
            )
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        # Global state in the first group, which the optimizer's state_dict saves: plain values only.
        self.param_groups[0].update(
            nonmono=nonmono, start_at=start_at, val_history=[], averaging_steps=0, triggered_at=-1
        )

    @property
    def averaging(self) -> bool:
        return self.param_groups[0]["triggered_at"] >= 0

    def observe(self, val_loss: float) -> bool:
        """Record a validation loss; True when it starts the averaging."""
        group = self.param_groups[0]
        history, nonmono, start_at = group["val_history"], group["nonmono"], group["start_at"]
        worse = len(history) > nonmono and val_loss > min(history[:-nonmono])
        history.append(float(val_loss))
        start = not self.averaging and (worse or (start_at is not None and len(history) >= start_at))
        if start:
            group["triggered_at"] = len(history) - 1
        return start

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch's signature)
        loss = None if closure is None else torch.enable_grad()(closure)()
        averaging = self.averaging
        if averaging:
            self.param_groups[0]["averaging_steps"] += 1
        n = self.param_groups[0]["averaging_steps"]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                p.add_(grad, alpha=-group["lr"])
                if averaging:
                    state = self.state[p]
                    if "average" not in state:
                        state["average"] = p.detach().clone()
                    else:  # the running mean of the n iterates since the trigger
                        state["average"].add_(p - state["average"], alpha=1.0 / n)
        return loss

    @torch.no_grad()
    def swap_average(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                average = self.state[p].get("average")
                if average is not None:
                    tmp = p.detach().clone()
                    p.copy_(average)
                    average.copy_(tmp)
