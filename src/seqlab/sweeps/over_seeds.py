"""Jobs of a sweep that differ only by `seed` are one configuration: its final metrics as mean, standard
deviation and n over the seeds (the per-job rows stay in the sweep's `jobs.csv`)."""

from __future__ import annotations

import math
import statistics
from typing import Any

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
