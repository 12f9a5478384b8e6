"""A sweep's table: the swept parameters as columns, one row per job, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

from seqlab.atomic import write_text_atomic
from seqlab.sweeps.jobs import parse_overrides

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
