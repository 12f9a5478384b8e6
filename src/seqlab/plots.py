"""Figures for TensorBoard, reports and sweep summaries (matplotlib, imported only when a figure is drawn;
no pyplot, so a notebook's own backend is left alone):
a confusion matrix, and a sweep's curves on shared axes and final metric against a swept parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

from seqlab.results import group_by_config, parse_overrides, seeds_swept, spread


def confusion_matrix_figure(matrix: Tensor, labels: Sequence[str] | None = None):
    """A counts heat map, true class down, predicted class across."""
    from matplotlib.figure import Figure

    n = matrix.size(0)
    labels = list(labels) if labels else [str(i) for i in range(n)]
    fig = Figure(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n), dpi=100)
    ax = fig.subplots()
    ax.imshow(matrix.cpu().numpy(), cmap="Blues")
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
    )
    top = matrix.max().item() or 1
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            ax.text(
                j,
                i,
                value,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > top / 2 else "black",
            )
    fig.tight_layout()
    return fig


def adversarial_grid(rows: Sequence[tuple[Tensor, Tensor, str, str]]):
    """One row per attack: original image, adversarial image, and their difference, titled with the classes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.1 * len(rows)), dpi=100)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for ax_row, (original, adversarial, left, right) in zip(axes, rows, strict=True):
        diff = (adversarial - original).cpu().numpy()
        bound = max(abs(diff).max(), 1e-6)
        panels = (
            (original.cpu().numpy(), "gray", 0, 1, left),
            (adversarial.cpu().numpy(), "gray", 0, 1, right),
            (diff, "seismic", -bound, bound, "perturbation"),
        )
        for ax, (image, cmap, lo, hi, title) in zip(ax_row, panels, strict=True):
            ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def plot_curves(rows: list[dict[str, Any]], params: list[str], path: Path) -> None:
    """train/loss, val/loss and the main metric per epoch, every configuration on shared axes: one line
    per job, or, where jobs differ only by seed, their mean with a band of one standard deviation."""
    from matplotlib.figure import Figure

    metric = next((r["metric"] for r in rows if r["metric"]), "val/loss")
    panels = list(dict.fromkeys(["train/loss", "val/loss", metric]))
    for r in rows:
        r["config"] = {p: parse_overrides(r["overrides"]).get(p, "") for p in params}
    groups = (
        group_by_config(rows, params, "config") if seeds_swept(params) else [(r["config"], [r]) for r in rows]
    )
    fig = Figure(figsize=(5 * len(panels), 4), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)
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
    from matplotlib.figure import Figure

    xs = sorted(points)
    means, stds, _ = zip(*(spread(points[x]) for x in xs), strict=True)
    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
    ax.set(xlabel=param, ylabel=metric, title=f"{metric} vs {param}")
    fig.savefig(path)
    return True
