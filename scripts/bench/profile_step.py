"""Where a training step's time goes, for a model so small that the framework's own cost shows: the
seqlab path on a 1 x 8 RNN (row-wise MNIST) under cProfile, each seqlab callback hook, metric update and
logging call as microseconds per step, beside Lightning's own loop.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/profile_step.py [--batches 200] [overrides...]

cProfile slows every Python call alike, so read the figures as shares of the step, not as absolute costs
(`make bench` gives those).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile

import torch
from benchlib import add_common_args, bench_cfg, prepared_datamodule, serving, steady_allocator

from seqlab import build

# (label, module path fragment, function name): the per-step work seqlab adds to Lightning's loop.
WATCHED = [
    ("training_step (forward, loss, backward excluded)", "tasks/classification.py", "training_step"),
    ("train metric updates (accuracy, mean loss)", "torchmetrics/metric.py", "wrapped_func"),
    (
        "train accuracy and loss sums, counted every 64 steps",
        "tasks/classification.py",
        "_count_train_batches",
    ),
    ("log_step (per-step loss, when logged)", "tasks/base.py", "log_step"),
    ("GradNormMonitor hooks", "callbacks/grad_norm.py", None),
    ("NonFiniteLossGuard hooks", "callbacks/guards.py", None),
    ("EpochHistory hooks", "callbacks/history.py", None),
    ("SignalCheckpoint hooks", "callbacks/preemption.py", None),
    ("data module train_position / transfer", "data/mnist.py", None),
    ("Lightning: optimizer step + closure", "lightning/pytorch/loops/optimization/automatic.py", "run"),
    ("Lightning: logger connector", "lightning/pytorch/trainer/connectors/logger_connector", None),
    ("Lightning: callback hook dispatch", "lightning/pytorch/trainer/call.py", "_call_callback_hooks"),
    ("torch: backward", "torch/_tensor.py", "backward"),
    ("torch: optimizer step", "torch/optim/optimizer.py", "wrapper"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    add_common_args(parser)
    args = parser.parse_args()
    steady_allocator()
    with tempfile.TemporaryDirectory() as out:
        tiny = [
            "model.net.cell=rnn",
            "model.net.hidden_dim=8",
            "model.net.num_layers=1",
            "data.train_subset=null",
        ]
        cfg = bench_cfg("mnist_lstm", args.data_dir, out, *tiny, *args.overrides)
        datamodule = prepared_datamodule(cfg)
        batches = [b for _, b in zip(range(args.batches), datamodule.train_dataloader(), strict=False)]
        torch.manual_seed(0)
        task = build.build_task(cfg, datamodule)
        trainer = build.build_trainer(cfg, task, build.build_callbacks(cfg), [])
        profile = cProfile.Profile()
        profile.enable()
        trainer.fit(task, datamodule=serving(datamodule, batches))
        profile.disable()
    stats = pstats.Stats(profile)
    steps = len(batches)
    fit_s = next(v[3] for k, v in stats.stats.items() if k[2] == "fit" and "trainer/trainer.py" in k[0])
    print(
        f"# 1 x 8 RNN, {steps} steps of {cfg.data.batch_size}: {fit_s / steps * 1e6:,.0f} us a step under cProfile"
    )
    print(f"{'what':<55} {'us/step':>9} {'share':>7}")
    for label, path, name in WATCHED:
        # cumulative time of the matching functions; for a whole file, of its outermost functions only
        # (a hook calling a hook of the same file counts once)
        total = sum(
            v[3]
            for k, v in stats.stats.items()
            if path in k[0] and (k[2] == name if name else not any(path in c[0] for c in v[4]))
        )
        print(f"{label:<55} {total / steps * 1e6:9.1f} {total / fit_s:7.1%}")


if __name__ == "__main__":
    main()
