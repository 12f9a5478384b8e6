"""Teacher forcing against free running on PTB (the course's Q2.4/Q2.5), from the `ptb_teacher_forcing`
sweep: perplexity per epoch, the training curves of both, and the distances between the same word pairs
in both models' embeddings.

    python -m seqlab.train -m sweep=ptb_teacher_forcing
    python scripts/results/teacher_forcing_figure.py [--sweep outputs/sweeps/ptb_teacher_forcing] [--out results]

Writes results/ptb_teacher_forcing.md and .png. Validation and test perplexity are always measured with
the true previous words as inputs; the training curve is the loss on the inputs each model trained on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from seqlab.restore import restore_from_checkpoint  # noqa: E402
from seqlab.results import (
    read_history,  # noqa: E402
    run_dirs,  # noqa: E402
)
from seqlab.rundir.records import last_checkpoint  # noqa: E402
from seqlab.tools.embeddings import pair_distances  # noqa: E402

PAIRS = [
    ("army", "navy"),
    ("army", "taxpayer"),
    ("buy", "sell"),
    ("stock", "shares"),
    ("company", "firm"),
    ("monday", "tuesday"),
    ("good", "bad"),
    ("year", "month"),
]
STEP_TAG = "train/loss_step"


def label(ratio: float) -> str:
    return {1.0: "teacher forcing", 0.0: "free running"}.get(ratio, f"teacher forcing {ratio:g}")


def job_pair_distances(job: Path, data_dir: str | None) -> dict[tuple[str, str], float]:
    """Cosine distances between PAIRS in the word embedding of the job's last checkpoint."""
    _, datamodule, task = restore_from_checkpoint(last_checkpoint(job), data_dir)
    return pair_distances(task.net.embedding.weight.detach(), datamodule.vocab, PAIRS, "cosine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("outputs/sweeps/ptb_teacher_forcing"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--data-dir", default=None, help="where PTB is, if not where the runs read it")
    args = parser.parse_args()
    runs = []
    for job in run_dirs(args.sweep):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        metrics_path = job / "metrics.json"
        if not metrics_path.is_file():
            raise SystemExit(
                f"error: {job} has not finished (no metrics.json): rerun the sweep with resume=true"
            )
        events = EventAccumulator(str(job / "tensorboard")).Reload()
        curve = events.Scalars(STEP_TAG) if STEP_TAG in events.Tags()["scalars"] else []
        runs.append(
            {
                "name": label(float(config.model.teacher_forcing_ratio)),
                "history": read_history(job / "history.csv"),
                "metrics": json.loads(metrics_path.read_text()),
                "curve": [(p.step, math.exp(p.value)) for p in curve],
                "pairs": job_pair_distances(job, args.data_dir),
                "experiment": config.task_name,
            }
        )
    if not runs:
        raise SystemExit(
            f"error: no jobs in {args.sweep}: run python -m seqlab.train -m sweep=ptb_teacher_forcing"
        )

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        steps, ppl = zip(*run["curve"], strict=True) if run["curve"] else ((), ())
        left.plot(steps, ppl, label=run["name"])
        epochs = [int(h["epoch"]) + 1 for h in run["history"]]
        right.plot(epochs, [h["val/ppl"] for h in run["history"]], marker="o", label=run["name"])
        right.set_xticks(epochs)
    left.set(xlabel="training step", ylabel="training perplexity (its own inputs)", yscale="log")
    left.set_title("Training curves")
    right.set(xlabel="epoch", ylabel="validation perplexity (true inputs)", yscale="log")
    right.set_title("Validation perplexity per epoch")
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "ptb_teacher_forcing.png", dpi=110)
    plt.close(fig)

    wall = sum(r["metrics"].get("wall_time_s", 0.0) for r in runs)
    names = [r["name"] for r in runs]
    lines = [
        "# PTB: teacher forcing against free running",
        "",
        "Command: `python -m seqlab.train -m sweep=ptb_teacher_forcing` then "
        "`python scripts/results/teacher_forcing_figure.py` (with `SEQLAB_DATA_DIR=../shared/data`). "
        f"Experiment `{runs[0]['experiment']}` for {len(runs[0]['history'])} epochs; drawn "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d} from {args.sweep}; training and evaluation wall time "
        f"{wall / 60:.0f} min.",
        "",
        "Free running feeds each step the model's own previous prediction instead of the true word; "
        "validation and test always feed the true words.",
        "",
        "![curves](ptb_teacher_forcing.png)",
        "",
        "| epoch | " + " | ".join(f"{n}: train ppl | {n}: val ppl" for n in names) + " |",
        "|---|" + "---|---|" * len(runs),
    ]
    for i in range(max(len(r["history"]) for r in runs)):
        cells = []
        for run in runs:
            row = run["history"][i] if i < len(run["history"]) else {}
            cells += [f"{row.get('train/ppl', math.nan):.1f}", f"{row.get('val/ppl', math.nan):.1f}"]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| test perplexity | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(runs),
        "| at the best validation epoch | "
        + " | ".join(f"{r['metrics'].get('test/ppl', math.nan):.1f}" for r in runs)
        + " |",
        "",
        "Cosine distance (1 - cosine similarity) between word embeddings, last epoch:",
        "",
        "| pair | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for pair in PAIRS:
        lines.append(
            f"| {pair[0]} - {pair[1]} | " + " | ".join(f"{r['pairs'][pair]:.3f}" for r in runs) + " |"
        )
    (args.out / "ptb_teacher_forcing.md").write_text("\n".join(lines) + "\n")
    print(args.out / "ptb_teacher_forcing.md")


if __name__ == "__main__":
    main()
