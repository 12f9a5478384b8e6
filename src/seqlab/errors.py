"""The kinds of error seqlab reports in one clear message instead of a traceback, and the argument checks
shared by models, data modules, tasks and callbacks (each error names the argument, its value and what is
allowed)."""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or not what the task expects."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names where and what was kept."""


USER_ERRORS = (ConfigError, DataError, TrainingError)


OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space there, or write elsewhere (paths.log_dir=..., hydra.run.dir=...)",
    errno.EDQUOT: "free some of your quota, or write elsewhere (paths.log_dir=..., hydra.run.dir=...)",
    errno.EROFS: "the file system is read-only: write elsewhere (paths.log_dir=..., hydra.run.dir=...)",
    errno.EACCES: "you may not write there: write elsewhere (paths.log_dir=..., hydra.run.dir=...)",
    errno.EPERM: "you may not write there: write elsewhere (paths.log_dir=..., hydra.run.dir=...)",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EEXIST: "a file stands where a folder is needed: move it away, or choose another path",
}


def os_error_message(err: OSError) -> str:
    """One line for an error the operating system gave: the path, the reason with its errno name, the fix."""
    name = errno.errorcode.get(err.errno or 0, type(err).__name__)
    reason = err.strerror or str(err)
    where = f"{err.filename}: " if err.filename else ""
    hint = OS_ERROR_HINTS.get(err.errno or 0)
    return f"{where}{reason} ({name})" + (f"; {hint}" if hint else "")


def _check(values: dict[str, Any], ok: Callable[[Any], bool], allowed: str) -> None:
    for name, value in values.items():
        if not ok(value):
            raise ValueError(f"{name}={value!r} must be {allowed}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0  # True is not a count


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def check_positive(**values: int) -> None:
    _check(values, _positive_int, "a positive integer")


def check_positive_or_null(**values: int | None) -> None:
    """Each a positive integer or None (a config's null: no limit, or whole)."""
    _check(values, lambda v: v is None or _positive_int(v), "a positive integer or null")


def check_positive_number_or_null(**values: float | None) -> None:
    """Each a positive int or float (minutes, a norm) or None (a config's null: off)."""
    _check(values, lambda v: v is None or _positive_number(v), "positive or null")


def check_dropout(dropout: float, name: str = "dropout") -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}={dropout!r} must lie in [0, 1)")


def check_probability(probability: float, name: str) -> None:
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(f"{name}={probability!r} must lie in [0, 1]")


def check_choice(name: str, value: Any, allowed: Sequence[Any] | Mapping[Any, str]) -> None:
    """`allowed`: the values, or each value with what it means (shown in the message as `value (meaning)`)."""
    if value not in list(allowed):
        shown = [f"{a} ({allowed[a]})" for a in allowed] if isinstance(allowed, Mapping) else allowed
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(str, shown))}")
