"""Runs as data: what a run dir's files say (config, status, final metrics, best epoch, error, wall time,
machine), for one run, a sweep or a whole outputs tree; sweep summaries and `seqlab.runs` read them here."""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from seqlab.config import flatten
from seqlab.errors import DataError
from seqlab.rundir.claims import held_by_another_live_process
from seqlab.rundir.records import STOPPED, last_checkpoint, read_error, read_metrics

RETRIED_FILE = "retried_as"  # in a job dir whose trial a resumed search ran again: the retry's job number


class DamagedHistory(DataError):
    """A `history.csv` with a line that is not a whole row of numbers (cut short, edited); `rows` holds
    the whole rows before it."""

    def __init__(self, path: Path, line: int, rows: list[dict[str, float]]) -> None:
        super().__init__(f"{path}: line {line} is not a whole row of numbers (cut short or edited)")
        self.rows = rows


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a `history.csv` as floats (empty cells: NaN); [] when there is none. A line that is not a
    whole row (or a file that ends inside one) raises DamagedHistory, with the whole rows before it."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    reader = csv.DictReader(text.splitlines())
    rows: list[dict[str, float]] = []
    for row in reader:
        try:
            if None in row or None in row.values() or not row.get("epoch", "").isdigit():
                raise ValueError("not a whole row")
            rows.append({k: float(v) if v != "" else math.nan for k, v in row.items()})
        except ValueError:
            raise DamagedHistory(path, reader.line_num, rows) from None
    if text and not text.endswith("\n"):  # the last line was being written
        raise DamagedHistory(path, max(reader.line_num, 1), rows[:-1])
    return rows


def whole_history(path: str | Path) -> list[dict[str, float]]:
    """`read_history` for readers that carry on: a damaged file's whole rows, with a warning naming it."""
    try:
        return read_history(path)
    except DamagedHistory as err:
        import warnings

        warnings.warn(f"{err}; read up to there", stacklevel=2)
        return err.rows


def run_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs (those with a `.hydra/config.yaml`), in job-number order; a job another one retried
    (`RETRIED_FILE` names it) is left out."""
    return in_run_order([p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml")], sweep_dir)


def in_run_order(dirs: list[Path], root: Path) -> list[Path]:
    """Run dirs below `root` by path, jobs by number at every level; a job another one retried (its
    `RETRIED_FILE` names the retry) left out."""
    kept = [d for d in dirs if not (d / RETRIED_FILE).is_file()]
    return sorted(kept, key=lambda d: [job_order(part) for part in d.relative_to(root).parts])


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """A job's command-line overrides as key -> value (`+` and `~` prefixes dropped)."""
    return dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)


def job_order(name: str) -> tuple[bool, int, str]:
    """Numbered jobs first, by number (Hydra's 0, 1, ..., 10), then any others by name."""
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def read_run(job_dir: Path) -> dict[str, Any]:
    """One job: its overrides, status (done | failed | pruned | running | interrupted (resumable) |
    incomplete; `seqlab.sweeps.queue.with_queue` adds pending), final metrics, best epoch, error. Running:
    claimed by a live process. Interrupted: no metrics but a last.ckpt, and no error other than a stop
    signal (a SIGKILL leaves none)."""
    try:
        cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    except Exception as err:  # a record cut short or edited by hand: named, the other runs still read
        return {
            "job": job_dir.name,
            "overrides": [],
            "metric": None,
            "history": [],
            "epochs": 0,
            "status": "failed",
            "error": f"{job_dir / '.hydra'}: unreadable config records ({err})",
        }
    metric, mode = cfg.get("optimized_metric"), cfg.get("optimized_mode", "max")
    history = whole_history(job_dir / "history.csv")
    row: dict[str, Any] = {
        "job": job_dir.name,
        "overrides": overrides,
        "metric": metric,
        "history": history,
        "epochs": len(history),
    }
    scored = [h for h in history if metric in h and not math.isnan(h[metric])]
    if scored:
        pick = max if mode == "max" else min
        row["best_epoch"] = int(pick(scored, key=lambda h: h[metric])["epoch"])
    try:
        metrics = read_metrics(job_dir)
    except (
        DataError
    ) as err:  # cut short or garbled: named, and the job counts as failed (a rerun retrains it)
        row["status"], row["error"] = "failed", str(err)
        return row
    error = read_error(job_dir)
    if metrics is not None:
        row["status"] = "done"
        row["metrics"] = metrics
    elif held_by_another_live_process(job_dir):
        row["status"] = "running"
    elif last_checkpoint(job_dir).is_file() and (error is None or STOPPED in error["message"]):
        row["status"] = "interrupted (resumable)"
        row["error"] = (
            f"stopped or killed after {len(history)} whole epochs: rerun the sweep with resume=true to continue"
        )
    elif error is not None:
        row["status"] = "pruned" if error["type"] == "TrialPruned" else "failed"
        row["error"] = f"{error['type']}: {error['message']}"
    else:
        row["status"] = "incomplete"
        row["error"] = (
            f"no metrics.json and no error recorded: killed, or still running ({len(history)} epochs done)"
        )
    return row


SEED = "seed"


def seeds_swept(params: list[str]) -> bool:
    return SEED in params


def spread(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (0 for one value), n) of the finite values."""
    finite = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan, 0
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), std, len(finite)


def group_by_config(
    rows: list[dict[str, Any]], params: list[str], field: str | None = None
) -> list[tuple[dict[str, str], list[dict]]]:
    """(the configuration's swept values but the seed, its job rows), in order of first appearance. The
    values are the rows' own keys, or those of the dict under `field`."""
    keys = [p for p in params if p != SEED]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        values = row[field] if field else row
        groups.setdefault(tuple(str(values[k]) for k in keys), []).append(row)
    return [(dict(zip(keys, values, strict=True)), rows) for values, rows in groups.items()]


def find_runs(path: str | Path) -> list[Path]:
    """The run dirs at or below `path` (a run dir, a sweep dir or a whole outputs tree): every dir with a
    `.hydra/config.yaml`, in path order (a sweep's jobs by number); a job another one retried is left out."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such directory; give a run dir, a sweep dir or an outputs folder")
    if (path / ".hydra" / "config.yaml").is_file():
        return [path]
    return in_run_order([p.parent.parent for p in path.rglob(".hydra/config.yaml")], path)


def flat_config(run_dir: Path) -> dict[str, Any]:
    """A run's composed config (`.hydra/config.yaml`) as dotted keys -> values, `hydra` and `paths` left
    out. A value that only points at another key (`shuffle_seed: ${seed}`) reads as that key's value;
    one made by a resolver (`${run_id:}`, `${hydra:...}`) is kept as written, so what a run dir says
    does not depend on the process that reads it."""
    stored = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    flat = flatten(OmegaConf.to_container(stored, resolve=False), ".")

    def pointed(value: Any, seen: int = 0) -> Any:
        target = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
        if target is None or seen > 10 or target.group(1) not in flat:
            return value
        return pointed(flat[target.group(1)], seen + 1)

    return {name: pointed(value) for name, value in flat.items() if not name.startswith(("hydra.", "paths."))}


def run_record(run_dir: Path, root: Path) -> dict[str, Any]:
    """One row of `runs()`: where the run is, its status, final metrics, the machine and its config."""
    row = read_run(run_dir)
    machine = run_dir / "machine.txt"
    record: dict[str, Any] = {
        "run": str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
        "status": row["status"],
        "epochs": row["epochs"],
        "best_epoch": row.get("best_epoch"),
        **row.get("metrics", {}),
        "machine": machine.read_text().strip() if machine.is_file() else None,
        "error": row.get("error"),
        "path": str(run_dir),
    }
    try:
        return record | flat_config(run_dir)
    except Exception:  # already named in `error` by read_run
        return record


def runs(path: str | Path) -> Any:
    """Every run at or below `path` as one pandas DataFrame, a row a run: `run` (its dir, relative to
    `path`), `status` (done | failed | pruned | running | interrupted (resumable) | incomplete),
    `epochs`, `best_epoch`, the final metrics (`test/acc`, `val/ppl`, `wall_time_s`...), `machine`,
    `error`, `path`, and the composed config flattened to dotted keys (`model.net.cell`, `seed`...)."""
    import pandas as pd

    root = Path(path)
    return pd.DataFrame([run_record(run_dir, root) for run_dir in find_runs(root)])


def history(path: str | Path) -> Any:
    """The per-epoch rows (`history.csv`) of every run at or below `path` as one pandas DataFrame: `run`
    (as in `runs()`), then `epoch`, `step` and the epoch's metrics (`train/loss`, `val/acc`...)."""
    import pandas as pd

    root = Path(path)
    rows = []
    for run_dir in find_runs(root):
        name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        rows += [{"run": name, **row} for row in whole_history(run_dir / "history.csv")]
    frame = pd.DataFrame(rows)
    for column in ("epoch", "step", "train_batches"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame
