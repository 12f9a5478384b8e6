"""Runs as data: what a run dir's files say (config, status, final metrics, best epoch, error, wall time,
machine), for one run, a sweep or a whole outputs tree; sweep summaries and `seqlab.runs` read them here."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from seqlab.callbacks.history import read_history
from seqlab.errors import DataError
from seqlab.rundir.checkpoints import last_checkpoint
from seqlab.rundir.claims import held_by_another_live_process
from seqlab.rundir.records import STOPPED, read_error, read_metrics

RETRIED_FILE = "retried_as"  # in a job dir whose trial a resumed search ran again: the retry's job number


def run_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs (those with a `.hydra/config.yaml`), in job-number order; a job another one retried
    (`RETRIED_FILE` names it) is left out."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml")]
    dirs = [d for d in dirs if not (d / RETRIED_FILE).is_file()]
    return sorted(dirs, key=lambda d: job_order(d.name))


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
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    metric, mode = cfg.get("optimized_metric"), cfg.get("optimized_mode", "max")
    history = read_history(job_dir / "history.csv")
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
