"""Per-epoch metrics in the run dir (`history.csv`), for sweep summaries and plots without TensorBoard."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from seqlab.atomic import write_text_atomic
from seqlab.compat import batches_done_in_epoch
from seqlab.results import DamagedHistory, read_history


class EpochHistory(Checkpoint):
    """After every training epoch, one row of the epoch's logged metrics (rank 0 writes, atomically).

    A `Checkpoint` subclass only so that Lightning calls it after the task's own `on_train_epoch_end`,
    where epoch means such as `train/loss` are logged. A resumed run keeps the rows of earlier epochs.
    `train_batches` says how many of the epoch's training batches its train/* means cover: all of them
    (an epoch resumed mid-way in one process restores its sums from the checkpoint), except after a
    mid-epoch resume of several processes, whose means cover the batches run after the resume.
    """

    def __init__(self, filename: str = "history.csv") -> None:
        self.filename = filename
        self._first_batch: int | None = None  # the epoch's first batch in this process (past 0: resumed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_batch = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        if self._first_batch is None:
            self._first_batch = batch_idx

    def _path(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.filename

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        restored = getattr(pl_module, "sums_restored_in_epoch", None) == trainer.current_epoch
        first = 0 if restored else (self._first_batch or 0)  # restored sums cover the earlier batches too
        row["train_batches"] = batches_done_in_epoch(trainer) - first
        for name, value in sorted(trainer.callback_metrics.items()):
            if value.numel() == 1 and not name.endswith("_step"):
                row[name] = float(value)
        path = self._path(trainer)
        earlier = [r for r in history_so_far(path) if int(r["epoch"]) < trainer.current_epoch]
        for r in earlier:  # read back as floats: written again as the integers they are
            for key in ("epoch", "step", "train_batches"):
                if key in r and not math.isnan(r[key]):
                    r[key] = int(r[key])
        rows = [*earlier, row]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, out.getvalue())


def history_so_far(path: Path) -> list[dict[str, float]]:
    """The rows written before; a damaged file is kept aside (`history.csv.damaged`, never overwritten)
    with one line, and its whole rows carried over."""
    try:
        return read_history(path)
    except DamagedHistory as err:
        aside = path.with_name(path.name + ".damaged")
        n = 1
        while aside.exists():
            aside, n = path.with_name(f"{path.name}.damaged.{n}"), n + 1
        path.replace(aside)
        rank_zero_warn(f"{err}; kept as {aside.name}, its {len(err.rows)} whole rows carried over")
        return err.rows
