"""results/long_memory.md: every cell on the adding problem and copy memory at an equal budget, from the
sweeps `scripts/results/long_memory_table.sh` runs (outputs/sweeps/long_memory/<task>_T<T>/); with
`--search`, results/long_memory_solved.md: the search `scripts/results/long_memory_search.sh` runs
(outputs/long_memory_search/{candidates,final}/<task>_T<T>/<candidate>/).

    python scripts/results/long_memory_table.py [--sweeps outputs/sweeps/long_memory] [--out results]
    python scripts/results/long_memory_table.py --search outputs/long_memory_search [--out results]
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from seqlab.restore import read_checkpoint, restore_from_checkpoint
from seqlab.results import run_dirs
from seqlab.rundir.records import read_metrics

SOLVED_BELOW = 0.01  # adding: test MSE; copy: test cross-entropy per step
SETTINGS = ("adding_T200", "adding_T1000", "copy_memory_T100", "copy_memory_T500")


def job_row(job: Path) -> dict:
    """A finished job's figures; its model and data are rebuilt from its last checkpoint's config."""
    last = job / "checkpoints" / "last.ckpt"
    if not last.exists():
        raise SystemExit(f"error: {job} has no checkpoints/last.ckpt: rerun its sweep to finish it")
    cfg, datamodule, task = restore_from_checkpoint(last)
    params = sum(p.numel() for p in task.net.parameters())
    steps = read_checkpoint(last)["global_step"]
    metrics = read_metrics(job) or {}
    net, optimizer = cfg.model.net, cfg.optimizer
    setup = (
        f"{net.num_layers} layers x {net.hidden_dim} units, {optimizer._target_.rsplit('.', 1)[-1]} "
        f"{optimizer.lr:g}, batch {cfg.data.batch_size}, gradient norm clipped at {cfg.trainer.gradient_clip_val}"
    )
    return {
        "setup": setup,
        "cell": cfg.model.net.cell,
        "params": params,
        "steps": steps,
        "budget": cfg.trainer.max_time,
        "wall_s": metrics.get("wall_time_s"),
        "test_loss": metrics.get("test/loss"),
        "test_acc": metrics.get("test/acc"),
        "baseline": datamodule.baseline,
        "threads": (job / "machine.txt").read_text().splitlines()[0]
        if (job / "machine.txt").exists()
        else "",
    }


def table(setting: str, rows: list[dict]) -> list[str]:
    copy = setting.startswith("copy")
    head = "| cell | parameters | steps in budget | wall s | test loss | " + ("test acc | " if copy else "")
    lines = [head + "solved |", "|---" * (head.count("|")) + "|"]
    for r in rows:
        loss = r["test_loss"]
        solved = "—" if loss is None else ("yes" if loss < SOLVED_BELOW else "no")
        acc = f"{r['test_acc']:.3f} | " if copy and r["test_acc"] is not None else ("— | " if copy else "")
        loss_text = "failed" if loss is None else f"{loss:.4f}"
        wall = "—" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        lines.append(
            f"| {r['cell']} | {r['params']:,} | {r['steps']} | {wall} | {loss_text} | {acc}{solved} |"
        )
    return lines


def search_table(root: Path, out: Path) -> None:
    """Each candidate and final run of the search: its settings, steps, wall time and scores."""
    when = dt.datetime.now(dt.timezone.utc)
    lines = [
        "# Long-memory problems solved within 30 minutes",
        "",
        "Command: `bash scripts/results/long_memory_search.sh candidates <problem>/<candidate> ...` (each 5 "
        "minutes), then `... final <problem> <candidate>` for the one with the lowest val/loss (30 minutes), "
        "then this page via `python scripts/results/long_memory_table.py --search outputs/long_memory_search`. "
        f"Made {when:%Y-%m-%d}. Every run: 2 layers x 64 units, Adam 0.003, batch 50, gradient norm clipped "
        "at 1.0, two threads, `trainer.max_time` as the budget (validation every 100 steps at the problem's "
        "own T, the best validation checkpoint tested on 1000 sequences). Solved: test loss < 0.01; copy "
        "also asks >= 99% of the recalled symbols right. `data.curriculum=[...]`: the length of each "
        "training epoch (200 steps) before T.",
        "",
    ]
    machines = set()
    for stage in ("candidates", "final"):
        for setting in sorted((root / stage).glob("*_T*")):
            lines += [f"## {stage}: {setting.name.replace('_T', ', T = ').replace('_', ' ')}", ""]
            lines += [
                "| run | settings | steps | wall s | val loss | test loss | test acc | solved |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for job in sorted(p for p in setting.iterdir() if p.is_dir()):
                overrides = (job / ".hydra" / "overrides.yaml").read_text().splitlines()
                settings = " ".join(
                    o.lstrip("- ").strip("'\"")
                    for o in overrides
                    if o.lstrip("- +").startswith(("model.", "data.curriculum"))
                )
                metrics = read_metrics(job) or {}
                last = job / "checkpoints" / "last.ckpt"
                steps = read_checkpoint(last)["global_step"] if last.exists() else "—"
                loss, acc = metrics.get("test/loss"), metrics.get("test/acc")
                solved = loss is not None and loss < SOLVED_BELOW and (acc is None or acc >= 0.99)
                if (job / "machine.txt").exists():
                    machines.add((job / "machine.txt").read_text().strip())
                cells = [
                    job.name,
                    f"`{settings}`",
                    str(steps),
                    f"{metrics['wall_time_s']:.0f}" if "wall_time_s" in metrics else "—",
                    f"{metrics['val/loss']:.4f}" if "val/loss" in metrics else "—",
                    f"{loss:.4f}" if loss is not None else "—",
                    f"{acc:.3f}" if acc is not None else "—",
                    "yes" if solved else "no",
                ]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines += [f"Machine: {'; '.join(sorted(machines))}."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_memory_solved.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=Path, default=Path("outputs/sweeps/long_memory"))
    parser.add_argument("--search", type=Path, default=None, help="the search's runs: long_memory_solved.md")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    if args.search is not None:
        return search_table(args.search, args.out)
    when = dt.datetime.now(dt.timezone.utc)
    lines = [
        "# Long-memory problems: every cell at an equal budget",
        "",
        "Command: `bash scripts/results/long_memory_table.sh` (the four sweeps `sweep=long_memory_cells`, then this "
        f"table via `python scripts/results/long_memory_table.py`). Made {when:%Y-%m-%d} from {args.sweeps}.",
        "These are every cell at its default settings; [long_memory_solved.md](long_memory_solved.md) has the",
        "settings search that solves adding at T = 1000 (minGRU, `forget_bias: 5`, `data.curriculum`).",
        "Every job: {setup}, one thread, the "
        "same wall-clock budget per setting (`trainer.max_time`; validation every 100 steps inside it), the "
        f"best validation checkpoint tested on 1000 sequences. Solved: test loss < {SOLVED_BELOW} (adding: "
        "MSE; copy: cross-entropy per step).",
        "",
    ]
    results = {}
    for setting in SETTINGS:
        jobs = run_dirs(args.sweeps / setting) if (args.sweeps / setting).exists() else []
        if not jobs:
            print(f"{args.sweeps / setting}: no jobs, left out")
            continue
        rows = [job_row(job) for job in jobs]
        results[setting] = rows
        task, seq_len = setting.rsplit("_T", 1)
        lines += [
            f"## {task.replace('_', ' ')}, T = {seq_len} (budget {rows[0]['budget']}; memoryless baseline "
            f"{rows[0]['baseline']:.4f})",
            "",
            *table(setting, rows),
            "",
        ]
    if not results:
        raise SystemExit(f"error: {args.sweeps} holds none of {', '.join(SETTINGS)}: run the sweeps first")
    machine = next(r["threads"] for rows in results.values() for r in rows if r["threads"])
    setups = {r["setup"] for rows in results.values() for r in rows}
    lines[5] = lines[5].replace("{setup}", " / ".join(sorted(setups)))
    lines += [f"Machine: {machine}."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
