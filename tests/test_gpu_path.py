"""The GPU path, checked on a CPU: no per-step device read-back, precision and compile options."""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from seqlab import pipeline

# Calls that make the host wait for a GPU to finish, when their tensor lives there.
DEVICE_READS = {
    "item",
    "tolist",
    "numpy",
    "cpu",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "unique",
    "nonzero",
    "masked_select",
}
# Functions that read only on a CPU and take another, read-free path on a GPU.
CPU_ONLY_READS = {"normalize_logits_if_needed"}  # torchmetrics: torch.where on a GPU


def read_site(stack: list[traceback.FrameSummary]) -> str | None:
    """The innermost frame outside torch that led to a read; None for reads that stay on the host on a
    GPU too: the data modules build batches on the CPU, the optimizers keep their step counters there."""
    for frame in reversed(stack):
        if "/torch/optim/" in frame.filename or frame.name in CPU_ONLY_READS:
            return None
        if "/torch/" not in frame.filename:
            return (
                None if "/seqlab/data/" in frame.filename else f"{Path(frame.filename).name}:{frame.lineno}"
            )
    return None


class DeviceReads(TorchFunctionMode):
    """Counts device reads by the place (file:line outside torch) that led to them."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in DEVICE_READS:
            site = read_site(traceback.extract_stack()[:-1])
            if site is not None:
                self.sites[f"{func.__name__} at {site}"] += 1
        return func(*args, **(kwargs or {}))


SMALL_BATCHES = ["data.batch_size=8", "data.eval_batch_size=8"]  # enough steps in the tiny splits
TASKS = {
    "mnist": ["experiment=mnist_lstm", "data.val_size=40", *SMALL_BATCHES],
    "ptb": [
        "experiment=ptb_lab",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.seq_len=6",
        "model.truncated_bptt_steps=3",
    ],
    "imdb": ["experiment=imdb_lstm", "data.min_freq=1", "data.val_size=40", *SMALL_BATCHES],
    "imdb_bag": ["experiment=imdb_bag", "data.min_freq=1", "data.val_size=40", *SMALL_BATCHES],
}
# Cadenced reads (logging, gradient norms, loss checks) well beyond these runs; the progress bar on.
QUIET = [
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1000",
    "callbacks.grad_norm.every_n_steps=1000",
    "callbacks.nonfinite_loss.every_n_steps=1000",
    "trainer.enable_progress_bar=true",
]


def reads_by_steps(make_cfg, tmp_path: Path, *overrides: str) -> dict[int, Counter[str]]:
    """Device reads by site of the same run cut to 3 and to 9 training steps (and 2 and 4 validation ones)."""
    reads = {}
    for steps, val_steps in ((3, 2), (9, 4)):
        cfg = make_cfg(
            *overrides,
            *QUIET,
            f"+trainer.limit_train_batches={steps}",
            f"+trainer.limit_val_batches={val_steps}",
            output_dir=tmp_path / str(steps),
        )
        data = pipeline.build_datamodule(cfg)
        data.prepare_data()
        data.setup("fit")
        assert len(data.train_dataloader()) >= steps and len(data.val_dataloader()) >= val_steps
        with DeviceReads() as mode:
            pipeline.train(cfg)
        reads[steps] = mode.sites
    return reads


@pytest.mark.parametrize("task", sorted(TASKS))
def test_training_steps_never_wait_for_the_device(make_cfg, tmp_path, task):
    """The device reads of a run do not grow with its number of steps: none is taken per training or
    validation step (the test split, fixed here, is evaluated by the same code as validation)."""
    reads = reads_by_steps(make_cfg, tmp_path, *TASKS[task])
    grown = {site: (reads[3][site], reads[9][site]) for site in reads[9] if reads[9][site] > reads[3][site]}
    assert grown == {}, "(reads in 3 steps, in 9 steps) of the sites that read per step"


def test_the_read_counter_sees_a_per_step_read(make_cfg, tmp_path):
    """The check above can fail: a callback reading the loss each step is caught."""
    reads = reads_by_steps(
        make_cfg, tmp_path, *TASKS["mnist"], "+callbacks.reader._target_=tests.helpers.LossReader"
    )
    grown = {site for site in reads[9] if reads[9][site] > reads[3][site]}
    assert grown and all(site.startswith("item at helpers.py:") for site in grown), grown


@pytest.mark.parametrize("task", ["mnist", "ptb", "imdb_bag"])
def test_bf16_mixed_precision_trains(make_cfg, task):
    cfg = make_cfg(*TASKS[task], "debug=fdr", "trainer.precision=bf16-mixed")
    _, metrics = pipeline.train(cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


@pytest.mark.parametrize("task", ["mnist", "imdb_bag"])
def test_compiled_model_trains_and_keeps_the_checkpoint_keys(make_cfg, tmp_path, task):
    """`model.compile=true` compiles in place: its checkpoints load into an uncompiled model."""
    cfg = make_cfg(
        *TASKS[task],
        "debug=limit",
        "trainer.max_epochs=1",
        "model.compile=true",
        "model.compile_backend=aot_eager",  # the inductor backend needs a compiler toolchain
    )
    pipeline.train(cfg)
    task_module = pipeline.build_task(cfg, pipeline.build_datamodule(cfg))
    state = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert set(state["state_dict"]) == set(task_module.state_dict())
