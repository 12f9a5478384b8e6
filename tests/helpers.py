"""Callbacks that break a run on purpose, for the reliability tests (loaded by `+callbacks.x._target_=`)."""

from __future__ import annotations

import os
import signal

import lightning as L
import torch


class KillAt(L.Callback):
    """SIGKILL this process at the start of a given batch of a given epoch: no handler, no cleanup."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInSave(L.Callback):
    """SIGKILL this process halfway through writing its `save`-th checkpoint file (1-based)."""

    def __init__(self, save: int) -> None:
        self.save, self.count = save, 0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.count += 1
        if self.count != self.save:
            return

        def half_then_die(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = half_then_die


class PoisonAt(L.Callback):
    """Fill the first parameter with NaN before a given batch: the next loss is not finite."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
