"""Truncated BPTT against full backpropagation on PTB (the course's Q2.1): peak memory and perplexity.

Both train `ptb_zaremba_small` on windows of `--window` words (the hidden state carried from window to
window): truncated BPTT back-propagates and steps every `--k` words of a window, full backpropagation
through the whole window once. Each run is a fresh `seqlab.train` process; its peak resident memory is
read from the kernel when it exits.

    SEQLAB_DATA_DIR=../shared/data python scripts/results/tbptt_vs_full.py [--window 350] [--k 35] [--epochs 1]

Writes results/ptb_tbptt_vs_full.md; the runs go to outputs/tbptt_vs_full/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def described(run_dir: Path) -> tuple[str, str, str]:
    """The experiment, its model and optimization as the run's own config has them, and the machine the
    run recorded: what the table says comes from the runs, not from this script."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    net, clip = cfg.model.net, cfg.trainer.get("gradient_clip_val")
    optimizer = cfg.optimizer._target_.rsplit(".", 1)[-1]
    model = f"{net.num_layers} x {net.hidden_dim} {net.cell.upper()}, {optimizer} lr {cfg.optimizer.lr}"
    machine = run_dir / "machine.txt"
    recorded = machine.read_text().strip() if machine.is_file() else "a machine the run did not record"
    return cfg.task_name, model + (f", clip {clip}" if clip else ""), recorded


def train(run_dir: Path, k: int | None, args: argparse.Namespace) -> dict:
    """One run in a fresh process: its metrics.json and peak RSS (MB)."""
    command = [
        sys.executable,
        "-m",
        "seqlab.train",
        "experiment=ptb_zaremba_small",
        f"data.seq_len={args.window}",
        f"model.truncated_bptt_steps={k if k is not None else 'null'}",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.run.dir={run_dir}",
        "print_config=false",
        "trainer.enable_progress_bar=false",
        *args.overrides,
    ]
    shutil.rmtree(run_dir, ignore_errors=True)  # each comparison trains afresh: its memory is the figure
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: see {run_dir.parent / run_dir.name}.log")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=350, help="words per window (data.seq_len)")
    parser.add_argument("--k", type=int, default=35, help="truncation length of truncated BPTT")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("outputs/tbptt_vs_full"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for both runs")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    modes = [(f"truncated BPTT, k = {args.k}", args.k), (f"full backpropagation, {args.window} words", None)]
    rows = [(name, train(args.runs / ("full" if k is None else f"k{k}"), k, args)) for name, k in modes]
    experiment, model, machine = described(args.runs / f"k{args.k}")

    command = (
        "SEQLAB_DATA_DIR=../shared/data python scripts/results/tbptt_vs_full.py"
        + "".join(
            f" {flag} {value}"
            for flag, value in (("--window", args.window), ("--k", args.k), ("--epochs", args.epochs))
        )
        + "".join(f" {o}" for o in args.overrides)
    )
    lines = [
        "# PTB: truncated BPTT against full backpropagation",
        "",
        f"Command: `{command}`. Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine}.",
        "",
        f"`{experiment}` ({model}) for {args.epochs} epoch{'s' if args.epochs != 1 else ''} on windows of "
        f"{args.window} words, the hidden state carried across windows. Truncated BPTT back-propagates and "
        f"takes an optimizer step every {args.k} words; full backpropagation goes through the whole window "
        "and steps once per window. Peak memory is the training process's peak resident set (model, data "
        "and framework included: the difference between the rows is the stored activations).",
        "",
        "| mode | peak RSS MB | val ppl | test ppl | train wall time s |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['peak_rss_mb']:.0f} | {m['val/ppl']:.1f} | {m['test/ppl']:.1f} | "
            f"{m['wall_time_s']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ptb_tbptt_vs_full.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
