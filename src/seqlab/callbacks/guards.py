"""Stop on a non-finite training loss before it reaches a checkpoint."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from seqlab.checks import check_positive
from seqlab.errors import TrainingError
from seqlab.rundir.checkpoints import last_checkpoint


class NonFiniteLossGuard(L.Callback):
    """Raise a `TrainingError` naming epoch, step and batch of the first NaN or infinite training loss.

    Reading a loss back each step would stall an accelerator, so the finiteness flags stay where the loss
    is and are read every `every_n_steps` batches, at each epoch end and before every validation (hence
    before every checkpoint): the error still names the first bad batch, no checkpoint ever holds its
    weights, and a CPU run takes the same path as a GPU one.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        check_positive(every_n_steps=every_n_steps)
        self.every_n_steps = every_n_steps
        self._pending: list[tuple[int, int, int, torch.Tensor]] = []  # epoch, step, batch, loss

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # Only a reference per step: the losses are checked all at once when read.
        self._pending.append((trainer.current_epoch, trainer.global_step, batch_idx, loss.detach()))
        if len(self._pending) >= self.every_n_steps:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        losses = torch.stack([loss for *_, loss in pending]).float()  # scalar losses, one dtype per run
        finite = torch.isfinite(losses).cpu()  # one read for all pending steps
        if bool(finite.all()):
            return
        first = int((~finite).nonzero()[0])
        epoch, step, batch_idx, _ = pending[first]
        loss = losses[first]
        last = last_checkpoint(trainer.default_root_dir)
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved yet"
        raise TrainingError(
            f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {step}, batch {batch_idx}; "
            f"{kept}. Lower optimizer.lr, clip gradients (trainer.gradient_clip_val=...), or find the "
            "operation with debug=anomaly."
        )
