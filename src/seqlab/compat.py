"""Every reliance of seqlab on a Lightning, Hydra or torch internal, in one place, each with a test in
tests/test_compat.py: an upgrade that moves one of them fails there, by name, not somewhere downstream.

The rest of seqlab imports these names instead of reaching into the libraries itself.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import lightning as L
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # noqa: F401 (re-exported)
from hydra.core.utils import JobReturn, JobStatus
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

# Lightning ends `fit` with this on SIGTERM; SignalCheckpoint raises it on SIGUSR1/2 as well, so that
# every stop signal leaves the loops the same way (and `pipeline.fit` catches one exception).
StopTraining = SIGTERMException


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer a LightningModule is attached to, or None (`module.trainer` raises when detached)."""
    return module._trainer


def batches_done_in_epoch(trainer: L.Trainer) -> int:
    """Training batches of the current epoch whose step has run (what a mid-epoch resume skips)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def total_batch_index(trainer: L.Trainer) -> int:
    """The index of the training batch under way, counted over all epochs (Lightning's logging cadence)."""
    return trainer.fit_loop.total_batch_idx


def is_compiled(module: nn.Module) -> bool:
    """Whether `module.compile()` has already run on this module (in place: the module stays itself)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def datamodule_state_key(datamodule: L.LightningDataModule) -> str:
    """The key under which Lightning stores a data module's `state_dict()` in a checkpoint."""
    return type(datamodule).__qualname__


_FULL_KEY = re.compile(r"full_key: (\S+)")


def instantiation_error_key(message: str) -> str | None:
    """The config key Hydra's InstantiationException names in its message (it has no attribute for it)."""
    match = _FULL_KEY.search(message)
    return match.group(1) if match else None


def job_error(result: JobReturn) -> Any:
    """A launched job's return value or, for a failed job, its exception (`JobReturn.return_value`
    re-raises it, hence the private field)."""
    return result._return_value


def as_completed(result: JobReturn, return_value: Any = None) -> JobReturn:
    """A copy of a job's result marked completed with `return_value` (a sweeper then goes on)."""
    return with_return_value(result, return_value, status=JobStatus.COMPLETED)


def failed_job(overrides: list[str], error: BaseException) -> JobReturn:
    """The result of a job that failed with `error` (JobReturn takes it only as its private field)."""
    return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=error)


def with_return_value(result: JobReturn, return_value: Any, **changes: Any) -> JobReturn:
    """A copy of a job's result with another return value (or error) and other `changes` to its fields."""
    return replace(result, _return_value=return_value, **changes)
