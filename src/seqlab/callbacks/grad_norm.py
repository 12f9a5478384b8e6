"""Gradient norms of chosen parameters: how vanishing and exploding gradients show in TensorBoard."""

from __future__ import annotations

from fnmatch import fnmatch

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from seqlab.checks import check_positive


class GradNormMonitor(L.Callback):
    """Logs `grad_norm/<param>/l1` and `/l2` every `every_n_steps` optimizer steps, before clipping.

    `params` are glob patterns over parameter names; the default picks every recurrent layer-0 input
    and hidden-to-hidden weight. The first step's values are also printed to the console.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        params: tuple[str, ...] | list[str] = ("*weight_ih_l0", "*weight_hh_l0"),
    ) -> None:
        check_positive(every_n_steps=every_n_steps)
        self.every_n_steps, self.params = every_n_steps, tuple(params)
        self._printed = False

    def norms(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in module.named_parameters():
            if p.grad is not None and any(fnmatch(name, pattern) for pattern in self.params):
                g = p.grad.detach()
                out[f"grad_norm/{name}/l1"] = g.abs().sum()
                out[f"grad_norm/{name}/l2"] = g.norm()
        return out

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        first = not self._printed
        if trainer.global_step % self.every_n_steps and not first:
            return
        values = self.norms(pl_module)
        if not values:
            if first:  # a cell whose parameters have other names (the default globs name nn.RNN's)
                self._printed = True
                names = [n for n, p in pl_module.named_parameters() if p.requires_grad]
                shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
                rank_zero_warn(
                    f"callbacks.grad_norm.params={list(self.params)} matches no parameter of this model "
                    f"({shown}): no gradient norms are logged; name yours, e.g. "
                    "'callbacks.grad_norm.params=[\"*encoder.layers.0.*\"]', or set callbacks.grad_norm=null"
                )
            return
        # Straight to the loggers: every_n_steps, not the Trainer's log_every_n_steps, sets the cadence.
        floats = {k: v.item() for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(floats, step=trainer.global_step)
        if first:
            self._printed = True
            lines = "\n".join(f"  {k.removeprefix('grad_norm/'):<40} {v:.4e}" for k, v in floats.items())
            rank_zero_info(f"Gradient norms at the first step:\n{lines}")
