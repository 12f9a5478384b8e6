"""Sequence classification (sequential MNIST, IMDB): cross-entropy; accuracy, F1, AUROC, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from seqlab.tasks.base import MeanNLL, TaskModule


class SequenceClassifier(TaskModule):
    """Batches are (inputs, targets) or (inputs, targets, mask); the net maps inputs to class logits.

    Logged: `{train,val,test}/loss` and `/acc` per epoch, `train/loss_step` every `log_every_n_steps`;
    for val and test also macro `f1` and `auroc`, and a confusion-matrix image in TensorBoard.
    """

    COUNT_EVERY_N_STEPS = 64

    def __init__(self, net: nn.Module, **options: Any) -> None:
        """`options`: TaskModule's (optimizer, scheduler and their settings, compile)."""
        super().__init__(net, **options)
        n = net.head.out_features
        # No per-batch input checks (torch.unique): on a GPU each is a host-device sync, and the inputs
        # are ours (argmax/softmax of the logits, labels the data module validated). A non-finite
        # training loss is caught by NonFiniteLossGuard; a NaN eval loss shows as NaN.
        fast = {"validate_args": False}
        # The epoch's training sums, on the device, reduced across ranks once an epoch. A step only keeps
        # its detached logits, targets and loss (the half-dozen tensor ops that count a batch cost more
        # than a tiny model's step without them); they are counted together every
        # `COUNT_EVERY_N_STEPS` batches and at the epoch end. Examples are counted on the host.
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("train_loss_sum", torch.zeros((), dtype=torch.float64), persistent=False)
        self.train_count = 0
        self._uncounted: list[tuple[Tensor, Tensor, Tensor]] = []
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro", **fast),
                "f1": MulticlassF1Score(n, average="macro", **fast),
                "auroc": MulticlassAUROC(n, **fast),
            }
        )
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")
        self.val_confmat = MulticlassConfusionMatrix(n, **fast)
        self.test_confmat = MulticlassConfusionMatrix(n, **fast)
        self.val_loss, self.test_loss = MeanNLL(), MeanNLL()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.net(x, mask)

    def _logits(self, batch: tuple[Tensor, ...]) -> Tensor:
        return self(batch[0], batch[2] if len(batch) > 2 else None)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        logits, y = self._logits(batch), batch[1]
        loss = F.cross_entropy(logits, y)
        self._uncounted.append((logits.detach(), y, loss.detach()))
        if len(self._uncounted) >= self.COUNT_EVERY_N_STEPS:
            self._count_train_batches()
        self.log_step("train/loss_step", loss, prog_bar=True)
        return loss

    def count_pending(self) -> None:
        self._count_train_batches()

    def _count_train_batches(self) -> None:
        if not self._uncounted:
            return
        logits, targets, losses = zip(*self._uncounted, strict=True)
        self._uncounted = []
        sizes = [len(y) for y in targets]
        self.train_correct.add_((torch.cat(logits).argmax(-1) == torch.cat(targets)).sum())
        weighted = torch.stack(losses).double() * losses[0].new_tensor(sizes, dtype=torch.float64)
        self.train_loss_sum.add_(weighted.sum())  # in place: no Module.__setattr__
        self.train_count += sum(sizes)

    def on_train_epoch_end(self) -> None:
        self._count_train_batches()
        count = self.train_loss_sum.new_tensor(self.train_count)
        sums = torch.stack([self.train_correct.double(), self.train_loss_sum, count])
        correct, loss_sum, count = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = count.clamp(min=1)
        # Already reduced across ranks; sync_dist only tells Lightning so (a no-op off DDP).
        self.log_dict(
            {"train/loss": (loss_sum / count).float(), "train/acc": (correct / count).float()}, sync_dist=True
        )
        self.train_correct.zero_()
        self.train_loss_sum.zero_()
        self.train_count = 0

    def _eval_step(self, batch: tuple[Tensor, ...], stage: str) -> None:
        # Only metric updates per batch (no self.log): logging is done once, at the epoch end.
        logits, y = self._logits(batch), batch[1]
        getattr(self, f"{stage}_loss").update(F.cross_entropy(logits, y, reduction="sum"), len(y))
        probs = logits.softmax(-1)
        getattr(self, f"{stage}_metrics").update(probs, y)
        getattr(self, f"{stage}_confmat").update(probs, y)

    def _eval_epoch_end(self, stage: str) -> None:
        loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        # Metric objects are already reduced across ranks; sync_dist only tells Lightning so.
        self.log(f"{stage}/loss", loss.compute(), prog_bar=True, sync_dist=True)
        self.log_dict(metrics.compute(), sync_dist=True)
        loss.reset()
        metrics.reset()
        self._log_confusion_matrix(stage, getattr(self, f"{stage}_confmat"))

    def _log_confusion_matrix(self, stage: str, confmat: MulticlassConfusionMatrix) -> None:
        matrix = confmat.compute()
        confmat.reset()
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if self.trainer.sanity_checking or not writers or not self.trainer.is_global_zero:
            return
        from seqlab.plots import confusion_matrix_figure

        labels = getattr(self.trainer.datamodule, "label_names", None)
        for writer in writers:
            writer.add_figure(
                f"{stage}/confusion_matrix", confusion_matrix_figure(matrix, labels), self.global_step
            )

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    @torch.no_grad()
    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._logits(batch).softmax(-1)
