"""Sequential-MNIST benchmark: the seqlab (Lightning) training path against a plain PyTorch loop.

Both train the same model from the same initial weights on the same batches, in this process, in many
short alternating pairs so that machine noise hits both. Prints samples/s (median repeat) and the median
of the paired plain/seqlab time ratios (goal: >= 0.95) for the experiment and for a 1 x 8 RNN whose
tiny steps expose the framework's own cost per step (what a GPU would see), then the wall time of
`seqlab.train experiment=mnist_lstm debug=fdr` from start to exit (goal: < 15 s).

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_mnist.py [--batches 30] [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch
from benchlib import (
    Comparison,
    Figures,
    LoopTimer,
    Timing,
    add_common_args,
    add_comparison,
    bare_lightning_fit,
    bench_cfg,
    compare_with_plain,
    header,
    median,
    paired_ratio,
    plain_classifier_eval,
    plain_classifier_loop,
    prepared_datamodule,
    startup_time,
    steady_allocator,
)


def compare(cfg, datamodule, batches: list, val: list, repeats: int, bare: bool = False) -> Comparison:
    """Alternating repeats of both paths from the same initial weights (and, with `bare`, of a bare
    LightningModule on the same net and batches)."""
    from seqlab import build

    torch.manual_seed(0)
    template = build.build_task(cfg, datamodule).net
    init_state = copy.deepcopy(template.state_dict())
    plain_classifier_loop(copy.deepcopy(template), batches[:10], cfg)  # warm-up

    def plain() -> tuple[float, float]:
        net = copy.deepcopy(template)
        return plain_classifier_loop(net, batches, cfg), plain_classifier_eval(net, val, cfg)

    def bare_run() -> Timing:
        return bare_lightning_fit(cfg, copy.deepcopy(template), batches)

    return compare_with_plain(
        cfg, datamodule, init_state, batches, val, plain, repeats, bare_run if bare else None
    )


def add_bare_rows(figures: Figures, samples: int, steps: int, tiny: Comparison) -> None:
    """The 1 x 8 RNN as a bare LightningModule: its ratio to the plain loop, Lightning's own cost per step,
    and what seqlab costs beyond it, per step (the steady part of the loop) and once an epoch (its start
    and end), each the median of the differences within a turn."""
    plain_s, bare, seqlab = tiny.plain_train, tiny.bare_train, tiny.seqlab_train
    bare_s = [t.loop_s for t in bare]
    figures.add(
        "train throughput, 1 x 8 rnn, bare LightningModule",
        samples / median(bare_s),
        "samples/s",
        samples / median(plain_s),
        paired_ratio(plain_s, bare_s),
        "Lightning alone: the ceiling for seqlab's ratio",
    )
    figures.add(
        "Lightning's cost per training step, 1 x 8 rnn",
        median([b - p for p, b in zip(plain_s, bare_s, strict=True)]) / steps * 1e6,
        "us",
        goal="bare module minus plain loop (the epoch's start and end included)",
    )
    steady_steps = steps - LoopTimer.WARM_UP
    if steady_steps < 1:
        return  # too few batches for a steady part (--batches must exceed LoopTimer.WARM_UP)
    pairs = list(zip(bare, seqlab, strict=True))
    figures.add(
        "seqlab's cost per step beyond Lightning's, 1 x 8 rnn",
        median([s.steady_s - b.steady_s for b, s in pairs]) / steady_steps * 1e6,
        "us",
        goal=f"seqlab minus bare module over steps {LoopTimer.WARM_UP}-{steps - 1}; goal <= 100 us",
    )
    once = lambda t: t.loop_s - t.steady_s  # noqa: E731  the epoch's start, first steps and end
    figures.add(
        "seqlab's cost per epoch beyond Lightning's, 1 x 8 rnn",
        median([once(s) - once(b) for b, s in pairs]) * 1e3,
        "ms",
        goal=f"seqlab minus bare module: epoch start and end, first {LoopTimer.WARM_UP} steps",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_lstm")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20)
    add_common_args(parser)
    args = parser.parse_args()
    steady_allocator()

    with tempfile.TemporaryDirectory() as out:
        cfg = bench_cfg(
            args.experiment, args.data_dir, out, "data.train_subset=null", *args.overrides
        )  # enough batches
        datamodule = prepared_datamodule(cfg)
        batches = [b for _, b in zip(range(args.batches), datamodule.train_dataloader(), strict=False)]
        val = list(datamodule.val_dataloader())
        main_run = compare(cfg, datamodule, batches, val, args.repeats)
        # The same loops on a model so small that, as on a GPU, the framework's own cost per step shows.
        tiny_cfg = bench_cfg(
            args.experiment,
            args.data_dir,
            out,
            "data.train_subset=null",
            *args.overrides,
            "model.net.cell=rnn",
            "model.net.hidden_dim=8",
            "model.net.num_layers=1",
        )
        tiny = compare(tiny_cfg, datamodule, batches, val[:1], args.repeats, bare=True)
    samples, val_samples = sum(len(b[1]) for b in batches), sum(len(b[1]) for b in val)
    print(
        header(
            f"MNIST {args.experiment}: {len(batches)} batches x {cfg.data.batch_size}, view={cfg.data.view}"
        )
    )
    figures = Figures("mnist")
    add_comparison(figures, "train throughput", samples, "samples/s", main_run, "train")
    add_comparison(figures, "eval throughput", val_samples, "samples/s", main_run, "eval")
    add_comparison(figures, "train throughput, 1 x 8 rnn (tiny steps)", samples, "samples/s", tiny, "train")
    per_step = median([t.loop_s - p for p, t in zip(tiny.plain_train, tiny.seqlab_train, strict=True)])
    figures.add(
        "framework cost per training step, 1 x 8 rnn",
        per_step / len(batches) * 1e6,
        "us",
        goal="seqlab loop minus plain loop, median",
    )
    add_bare_rows(figures, samples, len(batches), tiny)
    figures.add(
        "start-up to exit, debug=fdr",
        startup_time("mnist_lstm", args.data_dir, *args.overrides),
        "s",
        goal="goal < 8 s on a CPU, < 15 s on a GPU",
    )
    figures.write(args.json, experiment=args.experiment, batches=len(batches))


if __name__ == "__main__":
    main()
