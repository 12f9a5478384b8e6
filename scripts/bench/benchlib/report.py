"""Benchmark figures: rows printed and written as JSON, the noise-control rows, system probes."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import torch

from benchlib.timing import Comparison, median, paired_ratio

CONTROL = "plain loop vs itself (noise control)"  # the end of the noise-control rows' measure
RATIO_GOAL = "goal >= 0.95 (median of paired repeats)"


class Figures:
    """Rows of one benchmark (`task, measure, seqlab, plain, ratio, unit, goal`), printed and written as JSON."""

    def __init__(self, task: str) -> None:
        self.task, self.rows = task, []

    def add(
        self,
        measure: str,
        seqlab: float,
        unit: str,
        plain: float | None = None,
        ratio: float | None = None,
        goal: str = "",
    ) -> None:
        if ratio is None and plain:
            ratio = seqlab / plain
        row = {"task": self.task, "measure": measure, "seqlab": seqlab, "plain": plain, "ratio": ratio}
        self.rows.append(row | {"unit": unit, "goal": goal})
        both = f"  plain {plain:,.1f}  ratio {ratio:.3f}" if plain is not None else ""
        print(f"{measure:<40} {seqlab:12,.2f} {unit}{both}  {goal}")

    def write(self, path: Path | None, **extra: object) -> None:
        cuda = (
            {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
        )
        self.add("peak RSS of this benchmark process", peak_rss_mb(), "MB")
        if cuda:
            self.add("peak CUDA memory allocated", cuda["cuda_peak_mb"], "MB")
        if path is not None:
            payload = {
                "task": self.task,
                "device": device_name(),
                "torch": torch.__version__,
                "rows": self.rows,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload | extra, indent=2) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def header(name: str) -> str:
    return f"# {name} | torch {torch.__version__} | {torch.get_num_threads()} threads | {device_name()}"


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def add_comparison(
    figures: Figures, measure: str, amount: float, unit: str, run: Comparison, loop: str
) -> None:
    """Rows of one loop (`train` or `eval`) of `run`: seqlab and plain throughput (median repeat each) with
    the median of the paired ratios; the same for the plain loop against itself (the noise control); then
    the seqlab call's one-off set-up + tear-down seconds, which the loop figures leave out."""
    plain_s, control_s = getattr(run, f"plain_{loop}"), getattr(run, f"control_{loop}")
    seqlab_s = [t.loop_s for t in getattr(run, f"seqlab_{loop}")]
    figures.add(
        measure,
        amount / median(seqlab_s),
        unit,
        amount / median(plain_s),
        paired_ratio(plain_s, seqlab_s),
        RATIO_GOAL,
    )
    figures.add(
        f"{measure}: {CONTROL}",
        amount / median(control_s),
        unit,
        amount / median(plain_s),
        paired_ratio(plain_s, control_s),
        "1.0 but for noise: how far a ratio strays here by chance",
    )
    call = "fit()" if loop == "train" else "validate()"
    overheads = [t.overhead_s for t in getattr(run, f"seqlab_{loop}")]
    figures.add(f"{call} set-up + tear-down, outside the loop", median(overheads), "s")
