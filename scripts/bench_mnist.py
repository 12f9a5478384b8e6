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
    add_common_args,
    bench_cfg,
    header,
    lightning_fit,
    paired_ratio,
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
        samples = sum(len(b[1]) for b in batches)
        torch.manual_seed(0)
        from seqlab import pipeline

        template = pipeline.build_task(cfg, datamodule).net
        init_state = copy.deepcopy(template.state_dict())
        plain_classifier_loop(copy.deepcopy(template), batches[:10], cfg)  # warm-up
        plain_t, light_t = [], []
        for repeat in range(args.repeats):  # alternate, and swap who goes first, so noise hits both alike
            runs = [
                lambda: plain_t.append(plain_classifier_loop(copy.deepcopy(template), batches, cfg)),
                lambda: light_t.append(lightning_fit(cfg, datamodule, init_state, batches)[0]),
            ]
            for run in runs if repeat % 2 == 0 else runs[::-1]:
                run()
    plain, light = samples / min(plain_t), samples / min(light_t)
    print(
        header(
            f"MNIST {args.experiment}: {len(batches)} batches x {cfg.data.batch_size}, view={cfg.data.view}"
        )
    )
    print(f"plain PyTorch loop : {plain:10.1f} samples/s  (best of {args.repeats}: {min(plain_t):.2f} s)")
    print(f"seqlab (Lightning) : {light:10.1f} samples/s  (best of {args.repeats}: {min(light_t):.2f} s)")
    print(
        f"ratio seqlab/plain : {paired_ratio(plain_t, light_t):10.3f}  (median of paired repeats; goal >= 0.95)"
    )
    t = startup_time("mnist_lstm", args.data_dir, *args.overrides)
    print(f"start-up to exit, seqlab.train experiment=mnist_lstm debug=fdr: {t:.1f} s (goal < 15 s)")


if __name__ == "__main__":
    main()
