"""The kinds of error seqlab reports in one clear message instead of a traceback."""

from __future__ import annotations

import errno


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
}


def os_error_message(err: OSError) -> str:
    """One line for an error the operating system gave: the path, the reason with its errno name, the fix."""
    name = errno.errorcode.get(err.errno or 0, type(err).__name__)
    reason = err.strerror or str(err)
    where = f"{err.filename}: " if err.filename else ""
    hint = OS_ERROR_HINTS.get(err.errno or 0)
    return f"{where}{reason} ({name})" + (f"; {hint}" if hint else "")
