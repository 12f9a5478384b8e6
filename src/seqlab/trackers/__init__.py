"""MLflow and W&B as loggers (`logger=mlflow`, `logger=wandb`, or beside others: `logger=[tensorboard,mlflow]`).

One run dir is one tracker run: the tracker's run id is kept in `<run dir>/tracker_ids.json` when the run
starts, so that `resume=true` and a SLURM requeue (both resume in the same run dir) log to the same run,
on the same step axis (Lightning logs at the global step, which the checkpoint restores). Bad settings
(a server that does not answer, an illegal W&B project name, the package missing) end before training,
in one line. `mlflow_run` and `wandb_run` hold the two loggers, `common` what they share.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import Logger

from seqlab.trackers.common import IDS_FILE, read_ids
from seqlab.trackers.mlflow_run import MLflowLogger
from seqlab.trackers.wandb_run import WandbLogger

__all__ = ["IDS_FILE", "MLflowLogger", "WandbLogger", "log_outcome", "log_stopped", "read_ids"]


def log_outcome(
    loggers: list[Logger], metrics: Mapping[str, float], best_checkpoint: str | None, step: int
) -> None:
    """At the end of a run, after metrics.json: what each tracker keeps of it."""
    for logger in loggers:
        if isinstance(logger, (MLflowLogger, WandbLogger)):
            logger.log_outcome(metrics, best_checkpoint, step)


def log_stopped(loggers: list[Logger]) -> None:
    for logger in loggers:
        if isinstance(logger, MLflowLogger):
            logger.log_stopped()
