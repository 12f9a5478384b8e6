"""Why the plain RNN fails, the textbook picture: the norm of d loss / d h_t, the gradient that reaches the
state at step t from the loss at the end, against t, for every cell, at initialisation and trained.

The models are the adding problem's (T = 1000) from `scripts/results/long_memory_table.sh`, each job's best
checkpoint, and the same config freshly initialised; the loss is their MSE on 100 test sequences.

    bash scripts/results/long_memory_table.sh      # or only: python -m seqlab.train -m sweep=long_memory_cells \
                                           #   experiment=adding data.seq_len=1000 trainer.max_time=00:00:06:00
    python scripts/results/state_gradients.py [--sweep outputs/sweeps/long_memory/adding_T1000] [--out results]

Writes results/state_gradients.png and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F
from torch import Tensor, nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqlab.build import build_task  # noqa: E402
from seqlab.restore import restore_from_checkpoint  # noqa: E402
from seqlab.results import run_dirs  # noqa: E402

EXAMPLES = 100


def state_gradient_norms(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """(T - 1,) mean over the examples of ||d loss / d h_t||, h_t the whole state (every layer) after
    step t, for t < T - 1: the gradient that reaches h_t through the steps after it.

    The encoder runs one step a call with its state handed on, so that each h_t is a tensor of its own
    whose gradient autograd keeps; an LSTM's state is the pair (h_t, c_t), and both count.
    (The last state reaches the loss through the outputs, not as a state: it is left out.)
    """
    net.eval()  # no dropout; the same function the test metrics measured
    encoder, state, states = net.encoder, None, []
    for x_t in x.unbind(1):
        out, state = encoder(x_t[:, None], state=state)
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            part.retain_grad()
        states.append(parts)
    prediction = net.head(encoder.pool_last(out, state, None))
    F.mse_loss(prediction, y).backward()
    # (layers, B, N) per part -> per-example norms over parts, layers and units -> mean over the examples
    return torch.stack(
        [sum(p.grad.abs().square().sum((0, 2)) for p in parts).sqrt().mean() for parts in states[:-1]]
    )


def best_checkpoint(job: Path) -> Path:
    """The monitored best (`epoch_NNN.ckpt`): the checkpoint folder's file that is not last.ckpt."""
    best = sorted(p for p in (job / "checkpoints").glob("epoch_*.ckpt"))
    if not best:
        raise SystemExit(
            f"error: {job} has no best checkpoint (checkpoints/epoch_*.ckpt): did the job finish?"
        )
    return best[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("outputs/sweeps/long_memory/adding_T1000"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    jobs = run_dirs(args.sweep)
    if not jobs:
        raise SystemExit(
            f"error: {args.sweep} holds no job dirs: run scripts/results/long_memory_table.sh first"
        )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    rows, seq_len = [], None
    for job in jobs:
        cfg, datamodule, trained = restore_from_checkpoint(best_checkpoint(job))
        datamodule.setup()
        x, y = datamodule.test_set[list(range(EXAMPLES))]
        torch.manual_seed(cfg.seed)
        fresh = build_task(cfg, datamodule)
        cell, seq_len = cfg.model.net.cell, x.size(1)
        norms = {}
        for ax, (stage, task) in zip(axes, (("at initialisation", fresh), ("trained", trained)), strict=True):
            norms[stage] = state_gradient_norms(task.net, x, y)
            ax.plot(range(seq_len - 1), norms[stage].numpy(), label=cell)
            ax.set(title=stage, xlabel="step t", yscale="log", ylim=(1e-30, 1))  # zeros (underflow) left out
        rows.append((cell, norms))
        print(cell, {k: f"{v[0]:.3g} .. {v[-1]:.3g}" for k, v in norms.items()}, flush=True)
    axes[0].set_ylabel("mean ||d loss / d h_t||")
    axes[1].legend()
    fig.suptitle(
        f"Adding problem, T = {seq_len}: the gradient reaching the state at step t from the loss at the end"
    )
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "state_gradients.png", dpi=120)
    write_report(args, rows, seq_len)


def write_report(args: argparse.Namespace, rows: list, seq_len: int) -> None:
    when = dt.datetime.now(dt.timezone.utc)

    def value(v: Tensor) -> str:
        return f"{v:.3g}" if v > 0 else "0 (underflow)"

    def cells(norms: Tensor) -> str:
        ratio = norms[0] / norms[-1]
        return f"{value(norms[-1])} | {value(norms[seq_len // 2])} | {value(norms[0])} | {value(ratio)}"

    lines = [
        "# Why the plain RNN fails: the gradient reaching each time step",
        "",
        f"Command: `bash scripts/results/long_memory_table.sh` then `python scripts/results/state_gradients.py`. Drawn "
        f"{when:%Y-%m-%d} from {args.sweep}: each cell's best checkpoint on the adding problem (T = {seq_len})"
        f" and the same model freshly initialised; mean over {EXAMPLES} test sequences of the norm of"
        " d loss / d h_t, h_t the state (all layers) after step t, for t < T - 1. The two marked values lie in the first and"
        " second halves: a model must carry the gradient from the last step back to the first half to learn."
        " `0 (underflow)`: smaller than float32 can hold, the gradient is gone.",
        "",
        "![state gradients](state_gradients.png)",
        "",
        "| cell | init: t = T-2 | t = T/2 | t = 0 | t=0 / t=T-2 | trained: t = T-2 | t = T/2 | t = 0 | t=0 / t=T-2 |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {cell} | {cells(norms['at initialisation'])} | {cells(norms['trained'])} |"
            for cell, norms in rows
        ),
    ]
    (args.out / "state_gradients.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
