"""Sweep results without a notebook: one row per job of a multirun dir, as tables and plots.

`summarize(sweep_dir)` reads each job dir (`metrics.json`, `error.json`, `history.csv`,
`.hydra/{config,overrides}.yaml`) and writes `summary.csv`, `summary.md`, `curves.png` and one
`<metric>_vs_<param>.png` per swept numeric parameter. `SweepSummary`, a Hydra callback, records a
failed job's error and rewrites the summary after every job and at the end of the sweep, so a sweep
that dies half-way still leaves a table of what finished.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import re
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seqlab.callbacks.history import read_history
from seqlab.checkpointing import last_checkpoint, write_text_atomic
from seqlab.claims import held_by_another_live_process, is_launching_process
from seqlab.queue import with_queue
from seqlab.seeds import aggregate, markdown_table, seeds_swept
from seqlab.sweep_plots import parse_overrides, plot_against, plot_curves

ERROR_FILE = "error.json"
RETRIED_FILE = "retried_as"  # in a job dir whose trial a resumed search ran again: the retry's job number
STOPPED = "stopped by a signal"  # the pipeline's message when a stop signal ended training


def record_failure(output_dir: str | Path, error: BaseException) -> None:
    """`error.json` in a failed job's dir: the exception's type, message and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    payload = {"type": type(error).__name__, "message": str(error), "where": where}
    write_text_atomic(Path(output_dir) / ERROR_FILE, json.dumps(payload, indent=2) + "\n")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs (those with a `.hydra/config.yaml`), in job-number order; a job another one retried
    (`RETRIED_FILE` names it) is left out."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml")]
    dirs = [d for d in dirs if not (d / RETRIED_FILE).is_file()]
    return sorted(dirs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job: its overrides, status (done | failed | pruned | running | interrupted (resumable) |
    incomplete; `seqlab.queue.with_queue` adds pending), final metrics, best epoch, error. Running:
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
    metrics_file, error_file = job_dir / "metrics.json", job_dir / ERROR_FILE
    if metrics_file.is_file():
        row["status"] = "done"
        row["metrics"] = json.loads(metrics_file.read_text())
    elif held_by_another_live_process(job_dir):
        row["status"] = "running"
    elif last_checkpoint(job_dir).is_file() and (
        not error_file.is_file() or STOPPED in json.loads(error_file.read_text())["message"]
    ):
        row["status"] = "interrupted (resumable)"
        row["error"] = (
            f"stopped or killed after {len(history)} whole epochs: rerun the sweep with resume=true to continue"
        )
    elif error_file.is_file():
        error = json.loads(error_file.read_text())
        row["status"] = "pruned" if error["type"] == "TrialPruned" else "failed"
        row["error"] = f"{error['type']}: {error['message']}"
    else:
        row["status"] = "incomplete"
        row["error"] = (
            f"no metrics.json and no error recorded: killed, or still running ({len(history)} epochs done)"
        )
    return row


def swept_params(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for k, v in parse_overrides(row["overrides"]).items():
            values.setdefault(k, set()).add(v)
    keys = [
        k
        for k, v in values.items()
        if len(v) > 1 or any(k not in parse_overrides(r["overrides"]) for r in rows)
    ]
    return sorted(keys)


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and flat rows of the summary table."""
    params = swept_params(rows)
    metric_names = sorted(
        {k for r in rows for k in r.get("metrics", {}) if k.startswith(("val/", "test/"))},
        key=lambda k: (not k.startswith("val/"), k),
    )
    columns = [
        "job",
        "status",
        *params,
        *metric_names,
        "best_epoch",
        "epochs",
        "wall_time_s",
        "overrides",
        "error",
    ]
    flat = []
    for r in rows:
        overrides = parse_overrides(r["overrides"])
        metrics = r.get("metrics", {})
        flat.append(
            {
                "job": r["job"],
                "status": r["status"],
                **{p: overrides.get(p, "") for p in params},
                **{m: metrics.get(m, "") for m in metric_names},
                "best_epoch": r.get("best_epoch", ""),
                "epochs": r["epochs"],
                "wall_time_s": round(metrics["wall_time_s"], 1) if "wall_time_s" in metrics else "",
                "overrides": " ".join(r["overrides"]),
                "error": r.get("error", ""),
            }
        )
    return columns, flat


def markdown(columns: list[str], flat: list[dict[str, Any]], title: str) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")[:160]

    shown = [c for c in columns if c != "overrides"]
    lines = [f"# {title}", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cell(row[c]) for c in shown) + " |" for row in flat]
    counts = Counter(row["status"] for row in flat)
    done = counts.pop("done", 0)
    queued = [f"; {counts.pop(status)} {status}" for status in ("running", "pending") if status in counts]
    failed = sum(counts.values())
    lines += [
        "",
        f"{done} of {len(flat)} jobs done"
        + (f"; {failed} failed or incomplete" if failed else "")
        + "".join(queued),
    ]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


@contextlib.contextmanager
def summary_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold `<sweep dir>/.summary.lock` while the summary is read and written: jobs that end at once (a
    parallel or SLURM sweep) each rewrite it from all job dirs, and the last to take the lock sees every
    job's end. Where the file system refuses locks (some NFS mounts) each file is still written whole."""
    with open(sweep_dir / ".summary.lock", "a") as handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock, also when the summary fails


def summarize(sweep_dir: str | Path, plots: bool = True) -> list[dict[str, Any]]:
    """Write the sweep's summary files; works on a finished, running or partly failed sweep, and on one
    submitted to SLURM and not started yet (its jobs then come from the submission record)."""
    sweep_dir = Path(sweep_dir)
    with summary_lock(sweep_dir):
        return write_summary(sweep_dir, plots)


def write_summary(sweep_dir: Path, plots: bool) -> list[dict[str, Any]]:
    rows = with_queue(sweep_dir, [read_job(d) for d in job_dirs(sweep_dir)])
    columns, flat = table_rows(rows)
    params = swept_params(rows)
    table = markdown(columns, flat, f"Sweep {sweep_dir}")
    if seeds_swept(params):  # one row per configuration in summary.*; every job in jobs.csv
        metric_names = [c for c in columns if c.startswith(("val/", "test/"))]
        config_columns, configs = aggregate(flat, params, metric_names)
        write_csv(sweep_dir / "summary.csv", config_columns, configs)
        write_csv(sweep_dir / "jobs.csv", columns, flat)
        title, jobs_table = table.split("\n", 1)
        over_seeds = "\n".join(markdown_table(config_columns, configs, metric_names))
        table = f"{title}\n\n## Over seeds: mean ± standard deviation (n done jobs)\n\n{over_seeds}\n\n## Jobs\n{jobs_table}"
    else:
        write_csv(sweep_dir / "summary.csv", columns, flat)
    write_text_atomic(sweep_dir / "summary.md", table)
    if plots and rows:
        plot_curves(rows, params, sweep_dir / "curves.png")
        metric = next((r["metric"] for r in rows if r["metric"]), None)
        for param in params if metric else []:
            plot_against(rows, param, metric, sweep_dir / f"{slug(metric)}_vs_{slug(param)}.png")
    return flat


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
            record_failure(config.hydra.runtime.output_dir, job_return._return_value)
        if config.hydra.mode == RunMode.MULTIRUN:
            summarize(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if Path(str(config.hydra.sweep.dir)).is_dir():
            summarize(config.hydra.sweep.dir)
