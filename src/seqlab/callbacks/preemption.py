"""A run told to stop (SIGTERM from a scheduler, `timeout` or Kubernetes; SIGUSR1 or SIGUSR2 from
`#SBATCH --signal`, the latter submitit's; Ctrl-C; SIGHUP from a closed terminal) writes a mid-epoch
checkpoint and ends non-zero, instead of exiting 0 with the epoch lost. Under SLURM the job is then
requeued and resumes from that checkpoint."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from seqlab.compat import StopTraining
from seqlab.errors import check_positive_number_or_null

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# Also a one-process run's: a terminal sends them to every rank of a DDP run at once, where each would
# stop at its own batch; there Lightning's KeyboardInterrupt handling ends every rank instead.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP)


class SignalCheckpoint(L.Callback):
    """On SIGTERM, SIGUSR1, SIGUSR2, and in a one-process run SIGINT (Ctrl-C) or SIGHUP, the run stops at
    the next point where its state is whole, writes what `resume=true` (or a SLURM requeue) needs, and
    ends with an error (the pipeline calls `hand_over()`):

    - inside an epoch's training batches: after the batch under way, `<dirpath>/last.ckpt` at that batch
      (the data module records the position in the epoch);
    - from an epoch's last batch to its end (validation, the epoch-end checkpoint): the epoch is finished
      first, then training stops at the next epoch's start, where the epoch-end last.ckpt is the state;
    - the sanity check, or after training (the final validation and test): at the next batch boundary,
      with nothing to write (the final phase runs again on resume).

    A signal never interrupts a checkpoint being written. A second Ctrl-C stops at once, with nothing
    written (Python's KeyboardInterrupt), for a user who will not wait for the batch under way. In a
    one-process run seqlab alone decides where to stop; with several processes SIGTERM also goes to
    Lightning's handler, which stops the other ranks.
    Handlers found at fit start are kept: SIGUSR1's and SIGUSR2's (Lightning's or submitit's requeue) run
    in `hand_over()`, once the checkpoint is on disk. `every_n_minutes` also writes the checkpoint every
    so many minutes of training (off by default), so that a SIGKILL loses at most that.
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
        self._save_on_stop = False  # the stop is at a training batch boundary: write last.ckpt there
        self._distributed = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = self.clock()
        self.signalled = None
        self._distributed = trainer.world_size > 1
        try:
            held = STOP_SIGNALS if self._distributed else STOP_SIGNALS + TERMINAL_SIGNALS
            self._previous = {s: signal.signal(s, self._on_signal) for s in held}
        except ValueError:  # not the main thread: leave the handlers alone
            self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C: at once
            sys.stderr.write(
                "\nCtrl-C: stopping after this batch with a checkpoint (Ctrl-C again: now, without)\n"
            )
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and self._distributed and callable(previous):
            previous(signum, frame)  # Lightning's: every rank stops at the same batch

    def hand_over(self) -> None:
        """After the stop: run the scheduler's own handler of the signal (submitit's or Lightning's SLURM
        handler requeues the job; submitit's also exits)."""
        signum, previous = self.signalled, self._previous.get(self.signalled or 0)
        self.release()
        if signum in (signal.SIGUSR1, signal.SIGUSR2) and callable(previous):
            previous(signum, None)

    def release(self) -> None:
        """Give the signals back to the handlers found at fit start (the run is over)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _stop(self, save: bool) -> None:
        self._save_on_stop = save
        raise StopTraining()  # Lightning's own way out of the loop, as for SIGTERM

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        last_of_epoch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if self.signalled is not None and (self._distributed or not last_of_epoch):
            self._stop(save=True)  # (several processes: at once, as Lightning stops the others)
        if self.every_s and not last_of_epoch and self.clock() - self._last_save >= self.every_s:
            self._save(trainer)
            self._last_save = self.clock()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.signalled is not None:  # the previous epoch ended whole, with its last.ckpt
            self._stop(save=False)

    def _stop_evaluating(self, trainer: L.Trainer) -> None:
        if self.signalled is not None and (trainer.sanity_checking or trainer.state.fn != "fit"):
            self._stop(save=False)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._stop_evaluating(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_evaluating(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        stop = isinstance(exception, StopTraining)
        ours = self._save_on_stop or (self._distributed and trainer.training)  # or Lightning's, mid-epoch
        if stop and ours and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._save(trainer)
        self._save_on_stop = False
        # The signals go back in release(), called by the pipeline once the trainer is torn down: Lightning
        # restores at teardown the handlers it found after on_fit_start, ours among them.

    def _save(self, trainer: L.Trainer) -> None:
        # The data modules store their position in the epoch (see seqlab.data.base.train_position).
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        except Exception as err:  # a failed save must not hide the signal
            rank_zero_warn(f"could not write {self.path} on the stop signal: {err}")
