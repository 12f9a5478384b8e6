"""The basic sweeper, reporting failed jobs in one line each instead of Hydra's traceback.

Hydra's BasicSweeper re-raises the first failed job's exception once its batch has run, which prints a
traceback after the other jobs finished fine. This one lets every batch run, then ends the sweep with
`SweepFailed`: Hydra prints a CompactHydraException's message alone and exits 1.
`HYDRA_FULL_ERROR=1` keeps Hydra's behaviour (the first failure's full traceback).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException

from seqlab.compat import BasicSweeper, as_completed, job_error
from seqlab.errors import os_error_message
from seqlab.sweeps.summary import summarize


class SweepFailed(CompactHydraException):
    """Some jobs of a sweep failed; the message has one line per failed job."""


def failure_report(
    sweep_dir: Path, failed: Sequence[tuple[int, list[str], BaseException]], total: int
) -> str:
    """One line for the sweep, then one per failed job: its own overrides and its error, cut to a line."""
    lines = [f"error: {len(failed)} of {total} jobs failed; see {sweep_dir / 'summary.md'}"]
    for num, overrides, error in failed:
        message = " ".join(str(error).split())
        message = message if len(message) <= 240 else message[:239] + "…"
        lines.append(f"  job {num} ({' '.join(overrides)}): {type(error).__name__}: {message}")
    return "\n".join(lines)


class FailureCollectingLauncher:
    """A launcher's results with each failed job counted and passed on as completed (its error.json is
    already written by SweepSummary), so that the sweeper goes on to the next batch."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.failed: list[tuple[int, list[str], BaseException]] = []
        self.total = 0

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        results = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        self.total += len(results)
        shared = set.intersection(*(set(o) for o in job_overrides)) if len(job_overrides) > 1 else set()
        kept = []
        for num, (overrides, result) in enumerate(zip(job_overrides, results, strict=True), initial_job_idx):
            if result.status == JobStatus.FAILED:
                own = [o for o in overrides if o not in shared]
                self.failed.append((num, own, job_error(result)))
                result = as_completed(result)
            kept.append(result)
        return kept


class ReportingSweeper(BasicSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if os.environ.get("HYDRA_FULL_ERROR") != "1":
            self.launcher = FailureCollectingLauncher(self.launcher)

    def sweep(self, arguments: list[str]) -> Any:
        returns = super().sweep(arguments)
        if isinstance(self.launcher, FailureCollectingLauncher) and self.launcher.failed:
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            report = failure_report(sweep_dir, self.launcher.failed, self.launcher.total)
            try:
                summarize(sweep_dir)
            except OSError as err:  # e.g. the disk the jobs filled: the report still names every job
                report += f"\n  summary.md not written: {os_error_message(err)}"
            raise SweepFailed(report)
        return returns
