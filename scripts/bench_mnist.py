"""Sequential-MNIST benchmark: the seqlab (Lightning) training path against a plain PyTorch loop.

Both train the same model from the same initial weights on the same batches, in this process, and the
measurements alternate so that machine noise hits both. Prints samples/s (best of the repeats) and the
median of the paired plain/seqlab time ratios (goal: >= 0.95),
then the wall time of `seqlab.train experiment=mnist_lstm debug=fdr` from start to exit (goal: < 15 s).

    SEQLAB_DATA_DIR=../shared/data python scripts/bench_mnist.py [--batches 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch
from benchlib import (
    Figures,
    add_common_args,
    alternate,
    bench_cfg,
    header,
    lightning_fit,
    lightning_validate,
    paired_ratio,
    plain_classifier_eval,
    plain_classifier_loop,
    prepared_datamodule,
    startup_time,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_lstm")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    add_common_args(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cfg = bench_cfg(
            args.experiment, args.data_dir, out, "data.train_subset=null", *args.overrides
        )  # enough batches
        datamodule = prepared_datamodule(cfg)
        batches = [b for _, b in zip(range(args.batches), datamodule.train_dataloader(), strict=False)]
        val = list(datamodule.val_dataloader())
        samples, val_samples = sum(len(b[1]) for b in batches), sum(len(b[1]) for b in val)
        torch.manual_seed(0)
        from seqlab import pipeline

        template = pipeline.build_task(cfg, datamodule).net
        init_state = copy.deepcopy(template.state_dict())
        plain_classifier_loop(copy.deepcopy(template), batches[:10], cfg)  # warm-up
        plain_t, light_t, plain_e, light_e = [], [], [], []

        def seqlab_run() -> None:
            seconds, task = lightning_fit(cfg, datamodule, init_state, batches)
            light_t.append(seconds)
            light_e.append(lightning_validate(cfg, task, val))

        def plain_run() -> None:
            net = copy.deepcopy(template)
            plain_t.append(plain_classifier_loop(net, batches, cfg))
            plain_e.append(plain_classifier_eval(net, val, cfg))

        alternate(plain_run, seqlab_run, args.repeats)
    print(
        header(
            f"MNIST {args.experiment}: {len(batches)} batches x {cfg.data.batch_size}, view={cfg.data.view}"
        )
    )
    figures = Figures("mnist")
    goal = "goal >= 0.95 (median of paired repeats)"
    figures.add(
        "train throughput",
        samples / min(light_t),
        "samples/s",
        samples / min(plain_t),
        paired_ratio(plain_t, light_t),
        goal,
    )
    figures.add(
        "eval throughput",
        val_samples / min(light_e),
        "samples/s",
        val_samples / min(plain_e),
        paired_ratio(plain_e, light_e),
        goal,
    )
    figures.add(
        "start-up to exit, debug=fdr",
        startup_time("mnist_lstm", args.data_dir, *args.overrides),
        "s",
        goal="goal < 15 s",
    )
    figures.write(args.json, experiment=args.experiment, batches=len(batches))


if __name__ == "__main__":
    main()
