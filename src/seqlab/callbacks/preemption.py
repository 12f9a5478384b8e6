"""A run told to stop (SIGTERM from a scheduler, `timeout` or Kubernetes; SIGUSR1 from `#SBATCH --signal`)
writes a mid-epoch checkpoint and ends non-zero, instead of exiting 0 with the epoch lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_warn


class SignalCheckpoint(L.Callback):
    """On SIGTERM (Lightning stops its loop after the batch under way) or SIGUSR1 (stopped the same way
    here), write `<dirpath>/last.ckpt` atomically with the position in the epoch, so that `resume=true`
    continues from that batch; the pipeline then ends the process with an error. `every_n_minutes` also
    writes it every so many minutes of training (off by default), so that a SIGKILL loses at most that.
    """

    def __init__(self, dirpath: str, every_n_minutes: float | None = None) -> None:
        if every_n_minutes is not None and every_n_minutes <= 0:
            raise ValueError(f"every_n_minutes={every_n_minutes!r} must be positive or null")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_s = every_n_minutes * 60 if every_n_minutes else None
        self.signalled: int | None = None
        self._previous: Any = None
        self._last_save = time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()
        try:
            self._previous = signal.signal(signal.SIGUSR1, self._on_sigusr1)
        except ValueError:  # not the main thread: leave the handlers alone
            self._previous = None

    def _on_sigusr1(self, signum: int, frame: Any) -> None:
        self.signalled = signum

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.signalled is not None:
            raise SIGTERMException()  # Lightning's own way out of the loop, as for SIGTERM
        if self.every_s and time.monotonic() - self._last_save >= self.every_s:
            self._save(trainer)
            self._last_save = time.monotonic()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if (
            isinstance(exception, SIGTERMException)
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
        ):
            self._save(trainer)
        self.on_fit_end(trainer, pl_module)

    def _save(self, trainer: L.Trainer) -> None:
        # The data modules store their position in the epoch (see seqlab.data.sharding.train_position).
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        except Exception as err:  # a failed save must not hide the signal
            rank_zero_warn(f"could not write {self.path} on the stop signal: {err}")
