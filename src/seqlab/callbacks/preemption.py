"""A run told to stop (SIGTERM from a scheduler, `timeout` or Kubernetes; SIGUSR1 or SIGUSR2 from
`#SBATCH --signal`, the latter submitit's) writes a mid-epoch checkpoint and ends non-zero, instead of
exiting 0 with the epoch lost. Under SLURM the job is then requeued and resumes from that checkpoint."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from seqlab.checks import check_positive_number_or_null
from seqlab.compat import StopTraining

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class SignalCheckpoint(L.Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2 the loop stops after the batch under way and writes
    `<dirpath>/last.ckpt` atomically with the position in the epoch, so that `resume=true` (or a SLURM
    requeue) continues from that batch; the pipeline then calls `hand_over()` and ends the process with
    an error. Handlers found at fit start are kept: SIGTERM's (Lightning's, which also stops DDP
    children) runs at once; SIGUSR1's and SIGUSR2's (Lightning's or submitit's requeue) run in
    `hand_over()`, once the checkpoint is on disk. `every_n_minutes` also writes the checkpoint every so
    many minutes of training (off by default), so that a SIGKILL loses at most that.
    """

    def __init__(
        self, dirpath: str, every_n_minutes: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        check_positive_number_or_null(every_n_minutes=every_n_minutes)
        self.path = Path(dirpath) / "last.ckpt"
        self.every_s = every_n_minutes * 60 if every_n_minutes else None
        self.clock = clock  # seconds; a test drives its own
        self.signalled: int | None = None
        self._previous: dict[int, Any] = {}
        self._last_save = clock()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = self.clock()
        self.signalled = None
        try:
            self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        except ValueError:  # not the main thread: leave the handlers alone
            self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)

    def hand_over(self) -> None:
        """After the stop: run the scheduler's own handler of the signal (submitit's or Lightning's SLURM
        handler requeues the job; submitit's also exits)."""
        signum, previous = self.signalled, self._previous.get(self.signalled or 0)
        self._restore()
        if signum in (signal.SIGUSR1, signal.SIGUSR2) and callable(previous):
            previous(signum, None)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.signalled is not None:
            raise StopTraining()  # Lightning's own way out of the loop, as for SIGTERM
        if self.every_s and self.clock() - self._last_save >= self.every_s:
            self._save(trainer)
            self._last_save = self.clock()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, StopTraining) and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._save(trainer)
        if not isinstance(exception, StopTraining):
            self._restore()

    def _save(self, trainer: L.Trainer) -> None:
        # The data modules store their position in the epoch (see seqlab.data.sharding.train_position).
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        except Exception as err:  # a failed save must not hide the signal
            rank_zero_warn(f"could not write {self.path} on the stop signal: {err}")
