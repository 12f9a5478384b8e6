"""What the trackers share: the run dir's ids file, the run's name, the package check."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from seqlab.atomic import write_text_atomic
from seqlab.errors import ConfigError

IDS_FILE = "tracker_ids.json"
# What a finished run dir holds that a tracker should keep beside its metrics.
RUN_FILES = ("metrics.json", "history.csv", "machine.txt", ".hydra/config.yaml", ".hydra/overrides.yaml")


def read_ids(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / IDS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ConfigError(
            f"{path}: not JSON ({err}); delete it to log this run as a new tracker run"
        ) from None


def record_id(run_dir: str | Path, tracker: str, record: dict[str, Any]) -> None:
    """Keep `record` under `tracker` in the run dir's ids file (atomically: a requeue may read it any time)."""
    ids = read_ids(run_dir)
    if ids.get(tracker) != record:
        write_text_atomic(Path(run_dir) / IDS_FILE, json.dumps({**ids, tracker: record}, indent=2) + "\n")


def require(package: str) -> None:
    try:
        importlib.import_module(package)
    except ImportError as err:
        raise ConfigError(
            f"logger.{package}: logger={package} needs the {package} package, which cannot be imported "
            f"({err}): pip install 'seqlab[{package}]' (or pip install {package}), or choose another logger=..."
        ) from None


def run_label(run_dir: Path) -> str:
    """The run dir's name; a sweep job's is `<sweep dir name>/<job dir>`, as its own dir is only a number."""
    sweep = sweep_dir()
    if sweep is not None and run_dir.is_relative_to(sweep):
        return f"{sweep.name}/{run_dir.relative_to(sweep)}"
    return run_dir.name


def sweep_dir() -> Path | None:
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return None
    return Path(HydraConfig.get().sweep.dir).absolute()


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
