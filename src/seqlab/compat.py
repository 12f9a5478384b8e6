"""Every reliance of seqlab on a Lightning, Hydra, torch or Python internal, in one place, each with a test in
tests/test_compat.py: an upgrade that moves one of them fails there, by name, not somewhere downstream.

The rest of seqlab imports these names instead of reaching into the libraries itself.
"""

from __future__ import annotations

import atexit
import logging
import re
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # noqa: F401 (re-exported)
from hydra.core.utils import JobReturn, JobStatus

if TYPE_CHECKING:  # Lightning and torch load when a run needs them, not when Hydra scans seqlab's plugins
    import lightning as L
    from torch import nn


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


_no_tips = _NoTips()


def quiet_library_notices() -> None:
    """Silence the notices a seqlab user cannot act on, where the libraries print them: Lightning's
    advertisement for its cloud logger, a deprecation inside Lightning's own code (torch's LeafSpec), and
    the hint to run under `srun` printed on any machine where SLURM is installed, also for a local run.
    Called when a command starts its work, not at import: Hydra imports plugins (and so seqlab) inside
    `warnings.catch_warnings()`, which would drop filters set then."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings(
        "ignore", message=r"The `srun` command is available on your system but is not used"
    )
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_tips)


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


def clear_exit_handlers() -> None:
    """Forget the `atexit` handlers inherited over a fork (the sweep's are not a job's: they would, e.g.,
    clean its temp dirs); the module has no public call for it."""
    atexit._clear()


def run_exit_handlers() -> None:
    """Run the `atexit` handlers registered so far (a forked job's own: trackers, claims) before the
    process ends with `os._exit`, which skips them; the module has no public call for it."""
    atexit._run_exitfuncs()


def __getattr__(name: str) -> Any:
    if name == "StopTraining":
        # Lightning ends `fit` with this on SIGTERM; SignalCheckpoint raises it on SIGUSR1/2 as well, so that
        # every stop signal leaves the loops the same way (and `pipeline.fit_stoppable` catches one exception).
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        return SIGTERMException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
