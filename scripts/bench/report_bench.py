"""Collect the figures of every benchmark (`bench/bench_*.json`) into bench/results.json and bench/results.md.

python scripts/bench/report_bench.py bench        (make bench runs the benchmarks, then this)
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from benchlib.report import CONTROL

GPU_ROWS = (
    "PTB ptb_zaremba_medium: s/epoch, test perplexity, seqlab/plain ratio",
    "IMDB imdb_best: s/epoch, seqlab/plain ratio",
    "MNIST mnist_lstm_best: s/epoch, seqlab/plain ratio",
)


def fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("bench"))
    args = parser.parse_args()
    parts = [json.loads(p.read_text()) for p in sorted(args.folder.glob("bench_*.json"))]
    if not parts:
        parser.error(f"no bench_*.json in {args.folder}: run the benchmarks with --json first (make bench)")
    devices = sorted({p["device"] for p in parts})
    results = {"machine": {"platform": platform.platform(), "devices": devices}, "benchmarks": parts}
    (args.folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Benchmarks ({', '.join(devices)}; torch {parts[0]['torch']})",
        "",
        "| task | measure | seqlab | plain loop | ratio | unit | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in parts:
        for r in part["rows"]:
            lines.append(
                f"| {r['task']} | {r['measure']} | {fmt(r['seqlab'])} | {fmt(r['plain'])} | "
                f"{fmt(r['ratio'], 3)} | {r['unit']} | {r['goal']} |"
            )
    # bench_cells compares cells with nn.LSTM (its "plain" column), not seqlab with a plain loop
    rows = [r for p in parts for r in p["rows"] if r["ratio"] is not None and p["task"] != "cells"]
    ratios = [r["ratio"] for r in rows if not r["measure"].endswith(CONTROL)]
    controls = [r["ratio"] for r in rows if r["measure"].endswith(CONTROL)]
    if ratios:
        lines += ["", f"Lowest seqlab/plain ratio: {min(ratios):.3f} (goal: every ratio >= 0.95)."]
    if controls:
        lines.append(
            f"Noise controls (a plain loop against itself, measured alike): {min(controls):.3f} to "
            f"{max(controls):.3f}; a ratio within that distance of 1 is not told apart from it here."
        )
    if devices == ["CPU"]:
        lines += ["", "GPU rows not measured (no GPU on this machine):", *(f"- {row}" for row in GPU_ROWS)]
    (args.folder / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
