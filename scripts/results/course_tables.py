"""The course's tables from seqlab sweeps: results/<sweep>.md and .png, the course's number beside ours.

    python scripts/results/course_tables.py [--sweeps outputs/sweeps] [--out results] [NAME ...]

Reads each finished sweep dir (`sweep=<NAME>` writes outputs/sweeps/<NAME>/); a missing one is skipped.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from seqlab.results import run_dirs
from seqlab.rundir.records import machine
from seqlab.sweeps.summary import summarize

# sweep -> (title, the swept key whose value names the row, {value: the course's test accuracy in %})
COURSE = {
    "imdb_optimizers": (
        "Optimizers, LSTM",
        "optimizer",
        {"sgd": 51.4, "adagrad": 85.2, "rmsprop": 87.7, "adam": 88.5},
    ),
    "imdb_optimizers_gru": (
        "Optimizers, GRU",
        "optimizer",
        {"sgd": 50.4, "adagrad": 86.0, "rmsprop": 86.8, "adam": 88.3},
    ),
    # The course has no working SGD row; the target for it is 85%.
    "imdb_sgd": ("SGD with momentum 0.9, lr 0.1, no dropout (LSTM)", "model.net.cell", {}),
    "imdb_seeds": ("Base models with Adam, over seeds", "experiment", {"imdb_lstm": 88.5, "imdb_gru": 88.3}),
    "imdb_layers": (
        "Layers (LSTM, Adam)",
        "model.net.num_layers",
        {"1": 88.5, "2": 88.7, "3": 88.5, "4": 88.0},
    ),
    "imdb_hidden": (
        "Hidden size (LSTM, Adam)",
        "model.net.hidden_dim",
        {"100": 88.5, "150": 89.0, "220": 88.8, "320": 88.8},
    ),
    "imdb_embed": (
        "Embedding size (LSTM, Adam; the course: a larger embedding gave 87.8)",
        "model.net.embed_dim",
        {"32": 88.5},
    ),
    "imdb_compound": ("Compound: 2 x 150 LSTM, embedding 150, Adam", "model.net.hidden_dim", {"150": 87.5}),
    "imdb_own_rnn": (
        "Hand-written RNN: embedding 32, hidden 64, RMSprop",
        "model.net.cell",
        {"own_rnn": 77.4},
    ),
    "imdb_best_recurrent": (
        "Best recurrent model, official split (course's best: 89.0)",
        "experiment",
        {"imdb_lstm_best": 89.0, "imdb_bilstm_best": 89.0},
    ),
    "imdb_region_inputs": (
        "Past imdb_bilstm_best: region inputs, word dropout; official split (goal: 91.0; course's best: 89.0)",
        "experiment",
        {"imdb_bilstm_pairs": 89.0, "imdb_bilstm_word_dropout": 89.0},
    ),
    "mnist_cells": (
        "MNIST rows, 2 x 128, first 10k images, 2 epochs",
        "model.net.cell",
        {"rnn": 10.0, "lstm": 87.5},
    ),
}


def machine_of(jobs: list[Path]) -> str:
    """Where the runs were measured (their machine.txt; each one once), else this machine, said to be that."""
    recorded = {(j / "machine.txt").read_text().strip() for j in jobs if (j / "machine.txt").is_file()}
    if recorded:
        return "; ".join(sorted(recorded))
    return f"{machine()} (where this table was made; the runs did not record theirs)"


def read_rows(sweep_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The summary's rows (one a configuration; means over seeds when seeds are swept) and every job's."""
    jobs = summarize(sweep_dir, plots=False)
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f)), jobs


def number(row: dict[str, str], metric: str) -> float | None:
    value = row.get(f"{metric}_mean", row.get(metric, ""))
    return float(value) * 100 if value not in ("", None) else None


def percent(row: dict[str, Any], metric: str) -> str:
    value = number(row, metric)
    return f"{value:.2f}" if value is not None else "-"


def spread(row: dict[str, str], metric: str, count: bool = True) -> str:
    std = row.get(f"{metric}_std", "")
    if std in ("", None):
        return ""
    return f" ± {float(std) * 100:.2f}" + (f" (n={row['n']})" if count else "")


def table(name: str, sweep_dir: Path, out: Path) -> Path:
    title, key, course = COURSE[name]
    rows, job_rows = read_rows(sweep_dir)
    jobs = run_dirs(sweep_dir)
    config = OmegaConf.load(jobs[0] / ".hydra" / "config.yaml")
    split = config.data.get("split", "-")
    wall = sum(
        json.loads((j / "metrics.json").read_text())["wall_time_s"]
        for j in jobs
        if (j / "metrics.json").is_file()
    )
    ends = [(j / "metrics.json").stat().st_mtime for j in jobs if (j / "metrics.json").is_file()]
    finished = (
        f"Finished {dt.datetime.fromtimestamp(max(ends), dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
        if ends
        else "No job finished"
    )
    lines = [
        f"# {title}",
        "",
        f"Command: `python -m seqlab.train -m sweep={name}` (with `SEQLAB_DATA_DIR=../shared/data`); "
        f"tables: `python scripts/results/course_tables.py {name}`.",
        f"Data split: `{split}`. Machine: {machine_of(jobs)}. {finished}; "
        f"training and evaluation wall time {wall / 60:.0f} min for {len(jobs)} job{'s' if len(jobs) != 1 else ''}.",
        "",
        f"| {key} | course test acc % | seqlab test acc % | seqlab val acc % | best epoch | status |",
        "|---|---|---|---|---|---|",
    ]
    labels, ours, errors, theirs = [], [], [], []
    for row in rows:
        # A key the sweep does not vary (a one-job sweep) is not a summary column: every job has its value.
        value = row[key] if key in row else str(OmegaConf.select(config, key))
        reference = course.get(value)
        lines.append(
            f"| {value} | {reference if reference is not None else '-'} | "
            f"{percent(row, 'test/acc')}{spread(row, 'test/acc')} | "
            f"{percent(row, 'val/acc')}{spread(row, 'val/acc', count=False)} | "
            f"{row.get('best_epoch') or '-'} | {row.get('status', 'done')} |"
        )
        labels.append(value)
        ours.append(number(row, "test/acc"))  # None for a job without a test result: no bar, "failed"
        errors.append(float(row.get("test/acc_std") or 0.0) * 100)
        theirs.append(reference)
    if any("n" in row for row in rows):  # rows are means over seeds: each seed's run follows
        lines += ["", "Per seed:", "", per_seed(job_rows, key)]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    bar_chart(title, key, labels, theirs, ours, errors, out / f"{name}.png")
    return out / f"{name}.md"


def per_seed(jobs: list[dict[str, Any]], key: str) -> str:
    lines = [
        f"| {key} | seed | seqlab test acc % | seqlab val acc % | best epoch | status |",
        "|---|---|---|---|---|---|",
    ]
    for job in jobs:
        lines.append(
            f"| {job.get(key, '-')} | {job.get('seed', '-')} | {percent(job, 'test/acc')} | "
            f"{percent(job, 'val/acc')} | {job.get('best_epoch') or '-'} | {job['status']} |"
        )
    return "\n".join(lines)


def bar_chart(
    title: str,
    key: str,
    labels: list[str],
    course: list[float | None],
    ours: list[float | None],
    errors: list[float],
    path: Path,
) -> None:
    """Course beside seqlab per row; `errors` (std over seeds, 0 for a single run) as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(1.2 * len(labels) + 2, 5.5), 3.5), dpi=100)
    xs = range(len(labels))
    nan = float("nan")  # a missing value draws no bar (a 0 would read as a 0% result)
    ax.bar([x - 0.2 for x in xs], [nan if v is None else v for v in course], width=0.4, label="course")
    ax.bar(
        [x + 0.2 for x in xs],
        [nan if v is None else v for v in ours],
        width=0.4,
        label="seqlab",
        yerr=errors if any(errors) else None,
        capsize=3,
    )
    known = [v for v in course + ours if v is not None]
    floor = min(known + [50]) - 5
    for x, value, error in zip(xs, ours, errors, strict=True):
        label = "failed" if value is None else f"{value:.1f}"
        ax.text(x + 0.2, (floor if value is None else value + error) + 0.5, label, ha="center", fontsize=7)
    ax.set(xticks=list(xs), xticklabels=labels, xlabel=key, ylabel="test accuracy %", title=title)
    ax.set_ylim(floor, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(COURSE))
    parser.add_argument("--sweeps", type=Path, default=Path("outputs/sweeps"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        sweep_dir = args.sweeps / name
        if not (sweep_dir / "multirun.yaml").is_file():
            print(f"{name}: no sweep in {sweep_dir}, skipped")
            continue
        print(f"{name}: {table(name, sweep_dir, args.out)}")


if __name__ == "__main__":
    main()
