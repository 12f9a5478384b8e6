"""The entry points, one module per command, and what they share (`launch`, `run`).

`python -m seqlab.<name>` and the `seqlab-<name>` console script start `seqlab.cli.<name>.main`. Each
Hydra app composes its config (`conf/<name>.yaml`) and calls one function through `run`, which ends a
single run's user error (config, data, training) with its message alone. That function is the command's
work, imported only once Hydra has parsed the command line (so that `--help` and a config error come
fast): `seqlab/tools/<name>.py` for the tools (attack, embeddings, predict, sample), `pipeline.py` for
train and eval, `sweeps.py` for summarize. `seqlab/<name>.py` only gives `-m` its name."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.errors import USER_ERRORS, os_error_message
from seqlab.rundir.records import restore_config_records
from seqlab.user_config import check_user_configs


def launch(app: Callable[[], Any]) -> None:
    """Start a Hydra app once the user's config folders are checked: a missing one ends in one line, a
    user config that seqlab's own of the same name hides gets a warning."""
    try:
        warnings = check_user_configs(sys.argv[1:])
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for warning in warnings:
        print(warning, file=sys.stderr)
    app()


def run(task_function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call `task_function(cfg)`; in a single run, a user error (config, data, training) ends with its message alone."""
    try:
        return task_function(cfg)
    except (*USER_ERRORS, OSError) as err:  # OSError: a write the file system refused (full, read-only...)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        restore_config_records()  # a refused resume leaves its run dir's records as they were
        raise SystemExit(f"error: {os_error_message(err) if isinstance(err, OSError) else err}") from None
