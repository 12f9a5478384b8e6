"""Sequence classification (sequential MNIST, IMDB): cross-entropy and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from seqlab.tasks.base import OptimizerFactory, SchedulerFactory, TaskModule


class SequenceClassifier(TaskModule):
    """Batches are (inputs, targets) or (inputs, targets, mask); the net maps inputs to class logits."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval)
        num_classes = net.head.out_features
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes, average="micro") for _ in range(3)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.net(x, mask)

    def _step(self, batch: tuple[Tensor, ...], stage: str, accuracy: MulticlassAccuracy) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x, batch[2] if len(batch) > 2 else None)
        loss = F.cross_entropy(logits, y)
        accuracy(logits.argmax(-1), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._step(batch, "test", self.test_acc)

    @torch.no_grad()
    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self(batch[0], batch[2] if len(batch) > 2 else None).softmax(-1)
