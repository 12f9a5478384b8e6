"""The long-memory problems' tasks: one value regressed from a sequence (adding), a class per step (copy)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.tasks.base import MeanNLL, TaskModule


class _MeanLossTask(TaskModule):
    """Logs `{train,val,test}/loss`, each the exact mean over its split (per example or per step), and
    the task's extra metrics (`METRICS`) the same way; `train/loss_step` every `log_every_n_steps`."""

    METRICS: tuple[str, ...] = ()

    def __init__(self, net: nn.Module, **options: Any) -> None:
        """`options`: TaskModule's (optimizer, scheduler and their settings, compile)."""
        super().__init__(net, **options)
        # One exact mean per (stage, metric): sums on the device, reduced across ranks at the epoch end.
        self.means = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanNLL()
                for stage in ("train", "val", "test")
                for name in ("loss", *self.METRICS)
            }
        )

    def _losses(self, batch: tuple[Tensor, ...]) -> dict[str, tuple[Tensor, int]]:
        """{"loss": (mean loss with its graph, count), metric: (sum, count)}."""
        raise NotImplementedError

    def _step(self, batch: tuple[Tensor, ...], stage: str) -> Tensor:
        values = self._losses(batch)
        for name, (value, count) in values.items():
            total = value.detach() * count if name == "loss" else value.detach()
            self.means[f"{stage}_{name}"].update(total, count)
        return values["loss"][0]

    def _log_means(self, stage: str) -> None:
        for name in ("loss", *self.METRICS):
            mean = self.means[f"{stage}_{name}"]
            self.log(f"{stage}/{name}", mean.compute(), prog_bar=name == "loss", sync_dist=True)
            mean.reset()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.net(x, mask)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.log_step("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_means("train")

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_means("val")

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_means("test")


class SequenceRegressor(_MeanLossTask):
    """A sequence -> one number (the net's one output), mean squared error: `loss` is the MSE."""

    def _losses(self, batch: tuple[Tensor, ...]) -> dict[str, tuple[Tensor, int]]:
        x, y = batch[0], batch[1]
        prediction = self(x, batch[2] if len(batch) > 2 else None)
        if prediction.shape != y.shape:
            raise ValueError(
                f"the net predicts {tuple(prediction.shape)} for targets {tuple(y.shape)}: a regression "
                "needs model.net.pooling=last|mean|max and one output"
            )
        return {"loss": (F.mse_loss(prediction, y), len(y))}


class StepClassifier(_MeanLossTask):
    """A class at every step (the net's `pooling: none`): `loss` is the cross-entropy per step, `acc` the
    accuracy on the steps whose target is not `blank_id` (for copy memory: the recalled symbols)."""

    METRICS = ("acc",)

    def __init__(self, net: nn.Module, blank_id: int = 0, **options: Any) -> None:
        super().__init__(net, **options)
        self.blank_id = blank_id

    def _losses(self, batch: tuple[Tensor, ...]) -> dict[str, tuple[Tensor, int]]:
        x, y = batch[0], batch[1]
        logits = self(x, batch[2] if len(batch) > 2 else None)
        if logits.shape[:2] != y.shape:
            raise ValueError(
                f"the net gives {tuple(logits.shape)} for per-step targets {tuple(y.shape)}: "
                "a class per step needs model.net.pooling=none"
            )
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        scored = y != self.blank_id
        correct = ((logits.argmax(-1) == y) & scored).sum().to(torch.float64)
        return {"loss": (loss, y.numel()), "acc": (correct, int(scored.sum()))}
