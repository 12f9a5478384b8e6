"""Figures for TensorBoard and reports (matplotlib, imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def confusion_matrix_figure(matrix: Tensor, labels: Sequence[str] | None = None):
    """A counts heat map, true class down, predicted class across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = matrix.size(0)
    labels = list(labels) if labels else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n), dpi=100)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2.1 * len(rows)), dpi=100, squeeze=False)
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
