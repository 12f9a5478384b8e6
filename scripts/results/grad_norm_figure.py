"""The gradient norm of each cell's recurrent weights (`weight_hh_l0`) over the
training steps of the `mnist_cells` sweep, read from the runs' own TensorBoard logs.

    python -m seqlab.train -m sweep=mnist_cells
    python scripts/results/grad_norm_figure.py [--sweep outputs/sweeps/mnist_cells] [--out results]

Writes results/mnist_grad_norms.png and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from seqlab.results import run_dirs  # noqa: E402

TAG = "grad_norm/net.encoder.rnn.weight_hh_l0/l2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("outputs/sweeps/mnist_cells"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows, config = [], None
    for job in run_dirs(args.sweep):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        cell = config.model.net.cell
        events = EventAccumulator(str(job / "tensorboard")).Reload()
        if TAG not in events.Tags()["scalars"]:
            raise SystemExit(f"error: {job} logged no {TAG}: run the sweep with sweep=mnist_cells")
        points = events.Scalars(TAG)
        ax.plot([p.step for p in points], [p.value for p in points], label=cell)
        values = [p.value for p in points]
        rows.append((cell, values[0], max(values), values[-1], len(points)))
    ax.set(xlabel="training step", ylabel="L2 norm of the gradient of weight_hh_l0", yscale="log")
    if config is None:
        raise SystemExit(f"error: {args.sweep} holds no job dirs: run the sweep with sweep=mnist_cells")
    # The title says what the runs were, read from their own config (the sweep swept only the cell).
    net, optimizer = config.model.net, config.optimizer
    name = optimizer._target_.rsplit(".", 1)[-1]
    view = {"rows": "Row-wise", "pixels": "Pixel-wise"}.get(config.data.view, "Permuted pixel-wise")
    ax.set_title(
        f"{view} MNIST, {net.num_layers} x {net.hidden_dim}, {name} {optimizer.lr:g}: recurrent-weight gradients"
    )
    ax.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "mnist_grad_norms.png", dpi=120)
    when = dt.datetime.now(dt.timezone.utc)
    lines = [
        "# Gradient norms of the recurrent weights over training",
        "",
        "What the optimizer sees of `weight_hh_l0`, not why the plain RNN fails: the gradient that reaches"
        " each time step is [state_gradients.md](state_gradients.md).",
        "",
        "Command: `python -m seqlab.train -m sweep=mnist_cells` then `python scripts/results/grad_norm_figure.py`"
        f" (with `SEQLAB_DATA_DIR=../shared/data`). Drawn {when:%Y-%m-%d} from {args.sweep}.",
        "",
        "![gradient norms](mnist_grad_norms.png)",
        "",
        "| cell | first step | largest | last logged | points |",
        "|---|---|---|---|---|",
        *(f"| {c} | {a:.3g} | {m:.3g} | {z:.3g} | {n} |" for c, a, m, z, n in rows),
    ]
    (args.out / "mnist_grad_norms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
