"""Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2017), as an optimizer whose state
holds everything (the trigger, the validation history, the averages), so a checkpoint resumes it exactly."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


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
