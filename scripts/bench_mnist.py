"""Sequential-MNIST benchmark: the seqlab (Lightning) training path against a plain PyTorch loop.

Both train the same model from the same initial weights on the same batches, in this process, and the
measurements alternate so that machine noise hits both. Prints samples/s and their ratio (goal: >= 0.95),
then the wall time of `seqlab.train experiment=mnist_lstm debug=fdr` from start to exit (goal: < 15 s).

    SEQLAB_DATA_DIR=../shared/data python scripts/bench_mnist.py [--batches 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch.utils.data import DataLoader

from seqlab import pipeline
from seqlab.config import CONF_DIR


def compose_cfg(experiment: str, data_dir: str, out: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"paths.data_dir={data_dir}"])
    with open_dict(cfg):
        cfg.paths.output_dir = out
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.enable_checkpointing = False
        cfg.trainer.max_epochs = 1
        cfg.callbacks = {k: v for k, v in cfg.callbacks.items() if k != "model_checkpoint"}
        cfg.logger = {}
    return cfg


def plain_loop(net: torch.nn.Module, batches: list, lr: float) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def lightning_path(cfg, datamodule, init_state: dict, batches: list) -> float:
    task = pipeline.build_task(cfg, datamodule)
    task.net.load_state_dict(init_state)
    trainer = pipeline.build_trainer(cfg, task, pipeline.build_callbacks(cfg), [])
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    start = time.perf_counter()
    trainer.fit(task, train_dataloaders=loader)
    return time.perf_counter() - start


def startup_time(data_dir: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "seqlab.train", "experiment=mnist_lstm", "debug=fdr", f"hydra.run.dir={out}"],
            check=True,
            capture_output=True,
            env={**os.environ, "SEQLAB_DATA_DIR": data_dir},
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_lstm")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("SEQLAB_DATA_DIR", str(Path(CONF_DIR).parent / "data")))
    args = parser.parse_args()

    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_cfg(args.experiment, args.data_dir, out)
        datamodule = pipeline.build_datamodule(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        batches = [b for _, b in zip(range(args.batches), loader, strict=False)]
        samples = sum(len(b[1]) for b in batches)
        torch.manual_seed(0)
        template = pipeline.build_task(cfg, datamodule).net
        init_state = copy.deepcopy(template.state_dict())
        lr = cfg.optimizer.lr
        # warm-up (allocator, kernels), then alternate
        plain_loop(copy.deepcopy(template), batches[:10], lr)
        plain_t, light_t = [], []
        for _ in range(args.repeats):
            net = copy.deepcopy(template)
            plain_t.append(plain_loop(net, batches, lr))
            light_t.append(lightning_path(cfg, datamodule, init_state, batches))
    plain, light = samples / min(plain_t), samples / min(light_t)
    print(f"# MNIST {args.experiment}: {len(batches)} batches x {cfg.data.batch_size}, view={cfg.data.view}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop : {plain:10.1f} samples/s  (best of {args.repeats}: {min(plain_t):.2f} s)")
    print(f"seqlab (Lightning) : {light:10.1f} samples/s  (best of {args.repeats}: {min(light_t):.2f} s)")
    print(f"ratio seqlab/plain : {light / plain:10.3f}  (goal >= 0.95)")
    print(f"start-up, seqlab.train experiment=mnist_lstm debug=fdr: {startup_time(args.data_dir):.1f} s (goal < 15 s)")


if __name__ == "__main__":
    main()
