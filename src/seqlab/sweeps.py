"""Sweep results without a notebook: one row per job of a multirun dir, as tables and plots.

`summarize(sweep_dir)` reads each job dir (`metrics.json`, `error.json`, `history.csv`,
`.hydra/{config,overrides}.yaml`) and writes `summary.csv`, `summary.md`, `curves.png` and one
`<metric>_vs_<param>.png` per swept numeric parameter. `SweepSummary`, a Hydra callback, records a
failed job's error and rewrites the summary after every job and at the end of the sweep, so a sweep
that dies half-way still leaves a table of what finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seqlab.callbacks.history import read_history
from seqlab.checkpointing import last_checkpoint, write_text_atomic
from seqlab.claims import held_by_another_live_process
from seqlab.seeds import aggregate, group_by_config, markdown_table, seeds_swept, spread

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
    incomplete), final metrics, best epoch, error. Running: claimed by a live process. Interrupted: no
    metrics but a last.ckpt, and no error other than a stop signal (a SIGKILL leaves none)."""
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


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    return dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)


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


def as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


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
    failed = sum(row["status"] != "done" for row in flat)
    lines += [
        "",
        f"{len(flat) - failed} of {len(flat)} jobs done"
        + (f"; {failed} failed or incomplete" if failed else ""),
    ]
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[dict[str, Any]], params: list[str], path: Path) -> None:
    """train/loss, val/loss and the main metric per epoch, every configuration on shared axes: one line
    per job, or, where jobs differ only by seed, their mean with a band of one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next((r["metric"] for r in rows if r["metric"]), "val/loss")
    panels = list(dict.fromkeys(["train/loss", "val/loss", metric]))
    for r in rows:
        r["config"] = {p: parse_overrides(r["overrides"]).get(p, "") for p in params}
    groups = (
        group_by_config(rows, params, "config") if seeds_swept(params) else [(r["config"], [r]) for r in rows]
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        for config, jobs in groups:
            by_epoch: dict[float, list[float]] = {}
            for r in jobs:
                for h in r["history"]:
                    if name in h and not math.isnan(h[name]):
                        by_epoch.setdefault(h["epoch"], []).append(h[name])
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            means, stds, _ = zip(*(spread(by_epoch[e]) for e in epochs), strict=True)
            jobs_label = ",".join(str(r["job"]) for r in jobs)
            label = f"{jobs_label}: " + " ".join(f"{p}={v}" for p, v in config.items())
            (line,) = ax.plot(epochs, means, marker="o", ms=3, label=label)
            if len(jobs) > 1:
                low = [m - s for m, s in zip(means, stds, strict=True)]
                high = [m + s for m, s in zip(means, stds, strict=True)]
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
        ax.set(title=name, xlabel="epoch")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=7)
        fig.subplots_adjust(bottom=0.18 + 0.04 * (len(labels) // 3))
    fig.savefig(path)
    plt.close(fig)


def plot_against(rows: list[dict[str, Any]], param: str, metric: str, path: Path) -> bool:
    """The final `metric` against a swept numeric parameter (done jobs), as mean and standard deviation
    where several jobs share a value (seeds); False when there is nothing to draw."""
    points: dict[float | None, list[float]] = {}
    for r in rows:
        if r["status"] == "done" and metric in r.get("metrics", {}):
            x = as_number(parse_overrides(r["overrides"]).get(param))
            points.setdefault(x, []).append(r["metrics"][metric])
    if not points or None in points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted(points)
    means, stds, _ = zip(*(spread(points[x]) for x in xs), strict=True)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
    ax.set(xlabel=param, ylabel=metric, title=f"{metric} vs {param}")
    fig.savefig(path)
    plt.close(fig)
    return True


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def summarize(sweep_dir: str | Path, plots: bool = True) -> list[dict[str, Any]]:
    """Write the sweep's summary files; works on a finished, running or partly failed sweep."""
    sweep_dir = Path(sweep_dir)
    rows = [read_job(d) for d in job_dirs(sweep_dir)]
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
        # A rerun job starts clean: an old failure must not outlive it.
        Path(config.hydra.runtime.output_dir, ERROR_FILE).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.FAILED:
            record_failure(config.hydra.runtime.output_dir, job_return._return_value)
        if config.hydra.mode == RunMode.MULTIRUN:
            summarize(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if Path(str(config.hydra.sweep.dir)).is_dir():
            summarize(config.hydra.sweep.dir)
