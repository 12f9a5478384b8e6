"""`summarize(sweep_dir)`: the summary files of a sweep, rewritten whole from its job dirs under a lock.

`summary.csv` and `summary.md` (jobs.py reads each job, tables.py lays them out; over_seeds.py adds mean ±
std when seeds were swept), `curves.png` and one `<metric>_vs_<param>.png` per swept numeric parameter
(plots.py). Jobs submitted to SLURM and not started yet come from the submission record (queue.py).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqlab.atomic import write_text_atomic
from seqlab.sweeps.jobs import job_dirs, read_job
from seqlab.sweeps.over_seeds import aggregate, markdown_table, seeds_swept
from seqlab.sweeps.plots import plot_against, plot_curves
from seqlab.sweeps.queue import with_queue
from seqlab.sweeps.tables import markdown, slug, swept_params, table_rows, write_csv


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
