"""Stop on a non-finite training loss before it reaches a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from seqlab.errors import TrainingError


class NonFiniteLossGuard(L.Callback):
    """Raise a `TrainingError` naming epoch, step and batch when the training loss is NaN or infinite.

    Checkpoints are written at epoch ends, so stopping here keeps the last good one untouched.
    The check reads the loss back from the device: on a GPU, `every_n_steps` > 1 trades the exact
    step of the failure for fewer synchronisations.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps={every_n_steps} must be positive")
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx % self.every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss.detach()).all()):
            return
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved yet"
        raise TrainingError(
            f"non-finite training loss ({loss.detach().float().item()}) at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step}, batch {batch_idx}; {kept}. Lower optimizer.lr, clip gradients "
            "(trainer.gradient_clip_val=...), or find the operation with debug=anomaly."
        )
