"""A sweep's summary, rewritten whole from its job dirs under a lock, and the Hydra callback that keeps it current.

`summarize(sweep_dir)` writes `summary.csv` and `summary.md`: the swept parameters as columns, one row per
job (`seqlab.results.read_run` reads each); where seeds were swept, one row per configuration with each
metric's mean ± std over the seeds (the per-job rows go to `jobs.csv`). `curves.png` and one
`<metric>_vs_<param>.png` per swept numeric parameter come from `seqlab.plots`. Jobs submitted to SLURM
and not started yet come from the submission record (queue.py). `SweepSummary` records a failed job's
error and rewrites the summary after every job and at the end, so a sweep that dies half-way still
leaves a table.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.atomic import write_text_atomic
from seqlab.compat import job_error
from seqlab.plots import plot_against, plot_curves
from seqlab.results import SEED, group_by_config, parse_overrides, read_run, run_dirs, seeds_swept, spread
from seqlab.rundir.claims import is_launching_process
from seqlab.rundir.records import ERROR_FILE, record_failure
from seqlab.sweeps.queue import with_queue


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
    rows = with_queue(sweep_dir, [read_run(d) for d in run_dirs(sweep_dir)])
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


# Names the sweep that launched a job: it sets Hydra's sweep settings, not the job's configuration, so a
# run made on its own and the same run made by `sweep=<name>` are one configuration.
SWEEP_SELECTOR = "sweep"


def swept_params(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (`sweep` itself is not one)."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for k, v in parse_overrides(row["overrides"]).items():
            if k != SWEEP_SELECTOR:
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


def aggregate(
    flat: list[dict[str, Any]], params: list[str], metric_names: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the per-configuration table: `<metric>_mean`, `<metric>_std` and `n` (done jobs)."""
    keys = [p for p in params if p != SEED]
    numbers = [*metric_names, "wall_time_s"]
    columns = [*keys, "n", "jobs", *(f"{m}_{s}" for m in numbers for s in ("mean", "std"))]
    rows = []
    for config, jobs in group_by_config(flat, params):
        done = [j for j in jobs if j["status"] == "done"]
        row: dict[str, Any] = {**config, "n": len(done), "jobs": " ".join(str(j["job"]) for j in jobs)}
        for m in numbers:
            mean, std, _ = spread([j[m] for j in done if j[m] != ""])
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        rows.append(row)
    return columns, rows


def markdown_table(columns: list[str], rows: list[dict[str, Any]], metric_names: list[str]) -> list[str]:
    """The per-configuration table as markdown lines, each metric as `mean ± std`."""
    keys = [c for c in columns if not c.endswith(("_mean", "_std")) and c != "jobs"]
    shown = [*keys, *metric_names, "jobs"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = [str(row[k]) for k in keys]
        for m in metric_names:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            cells.append("" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}")
        lines.append("| " + " | ".join([*cells, row["jobs"]]) + " |")
    return lines


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
            record_failure(config.hydra.runtime.output_dir, job_error(job_return))
        if config.hydra.mode == RunMode.MULTIRUN:
            summarize(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if Path(str(config.hydra.sweep.dir)).is_dir():
            summarize(config.hydra.sweep.dir)
