"""The Hydra callback that keeps a sweep's summary current: a failed job's error recorded, the summary
rewritten after every job and at the end, so a sweep that dies half-way still leaves a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.compat import job_error
from seqlab.rundir.claims import is_launching_process
from seqlab.rundir.records import ERROR_FILE, record_failure
from seqlab.sweeps.summary import summarize


class SweepSummary(Callback):
    """Hydra callback: record a failed job's error; rewrite the sweep summary after each job and at the end."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A rerun job starts clean: an old failure must not outlive it. Rank 0 alone: another rank that
        # starts later must not delete the failure rank 0 has just recorded.
        if is_launching_process():
            Path(config.hydra.runtime.output_dir, ERROR_FILE).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not is_launching_process():  # a job's DDP ranks started by SLURM all run it: rank 0 reports
            return
        if job_return.status == JobStatus.FAILED:
            record_failure(config.hydra.runtime.output_dir, job_error(job_return))
        if config.hydra.mode == RunMode.MULTIRUN:
            summarize(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if Path(str(config.hydra.sweep.dir)).is_dir():
            summarize(config.hydra.sweep.dir)
