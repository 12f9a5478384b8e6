"""The same net, loss, optimizer and clipping in the smallest LightningModule a user could write: what
Lightning itself costs per step, against which seqlab's own callbacks, metrics and logging are measured."""

from __future__ import annotations

import time

import hydra.utils
import lightning as L
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchlib.timing import LoopTimer, Timing


class BareClassifier(L.LightningModule):
    def __init__(self, net: nn.Module, optimizer: DictConfig) -> None:
        super().__init__()
        self.net, self.optimizer_cfg = net, optimizer

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        logits = self.net(batch[0], batch[2] if len(batch) > 2 else None)
        return F.cross_entropy(logits, batch[1])

    def configure_optimizers(self):
        return hydra.utils.instantiate(self.optimizer_cfg)(params=self.parameters())


def bare_lightning_fit(cfg: DictConfig, net: nn.Module, batches: list) -> Timing:
    """The training loop of a bare LightningModule on `batches`: no callbacks, metrics, logger or
    checkpoints (the timer's hooks aside)."""
    timer = LoopTimer()
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_epochs=1,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    start = time.perf_counter()
    trainer.fit(BareClassifier(net, cfg.optimizer), train_dataloaders=DataLoader(batches, batch_size=None))
    return Timing(timer.seconds["train"], time.perf_counter() - start, timer.steady_s)
