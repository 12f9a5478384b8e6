"""The GPU path, checked on a CPU: no per-step device read-back, precision and compile options."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from seqlab import build, pipeline
from seqlab.data.base import pin_memory
from tests.helpers import TrainingBatch

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
# Operations that take tensors from both sides by design: moves (`.data = ` too), packing's lengths.
MIXING_OPS = {"to", "copy_", "__set__", "_has_compatible_shallow_copy_type", "_pack_padded_sequence"}
# Functions that read only on a CPU and take another, read-free path on a GPU.
CPU_ONLY_READS = {"normalize_logits_if_needed"}  # torchmetrics: torch.where on a GPU


def read_site(stack: list[traceback.FrameSummary]) -> str | None:
    """The innermost frame outside torch that led to a read; None for reads that stay on the host on a
    GPU too: the optimizers keep their step counters there."""
    for frame in reversed(stack):
        if "/torch/optim/" in frame.filename or frame.name in CPU_ONLY_READS:
            return None
        if "/torch/" not in frame.filename:
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return None


def called_from_data_modules() -> bool:
    """Whether the innermost frame outside torch is seqlab's data code, which builds batches on the host."""
    frame = sys._getframe(2)
    while frame is not None and "/torch/" in frame.f_code.co_filename:
        frame = frame.f_back
    return frame is not None and "/seqlab/data/" in frame.f_code.co_filename


def tensors_in(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    flat = [*args, *kwargs.values()]
    flat += [x for a in flat if isinstance(a, (list, tuple)) for x in a]
    return [t for t in flat if isinstance(t, torch.Tensor)]


class DeviceReads(TorchFunctionMode):
    """A CPU run seen as a GPU one: counts the device reads by the place (file:line outside torch) that
    led to them, and by the training batch under way when the run has the `TrainingBatch` callback.

    Where tensors would lie on a GPU: on the host, what the data modules build, what `.cpu()` returns and
    what is computed from host tensors alone (reading them waits for nothing and is not counted); on the
    device, what `.to(device)` moves there and everything else. An operation that mixes host tensors
    (other than 0-dim ones) with device ones fails, as it would on a GPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[str] = Counter()
        self.batches: dict[int, Counter[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inputs = tensors_in(args, kwargs)
        host = [getattr(t, "_seqlab_on_host", False) for t in inputs]
        on_host = bool(inputs) and all(host)
        if any(host) and not on_host and name not in MIXING_OPS:
            mixed = [tuple(t.shape) for t, h in zip(inputs, host, strict=True) if h and t.dim()]
            if mixed:
                raise RuntimeError(f"{name}: host tensors of shapes {mixed} meet device tensors")
        if name in DEVICE_READS and not on_host:
            site = read_site(traceback.extract_stack()[:-1])
            if site is not None:
                read = f"{name} at {site}"
                self.sites[read] += 1
                if TrainingBatch.current is not None:
                    self.batches.setdefault(TrainingBatch.current, Counter())[read] += 1
        out = func(*args, **kwargs)
        if name in ("to", "cpu") and inputs and out is inputs[0]:
            out = out.clone()  # on a GPU a move makes a new tensor; here it would be the same one
        to_device = name == "to" and any(
            isinstance(a, (torch.device, str)) for a in (*args[1:], *kwargs.values())
        )
        if to_device or name == "cpu" or on_host or called_from_data_modules():
            for t in tensors_in((out,), {}):
                t._seqlab_on_host = not to_device
        return out


SMALL_BATCHES = ["data.batch_size=8", "data.eval_batch_size=8"]  # enough steps in the tiny splits
IMDB_DATA = ["data.min_freq=1", "data.val_size=40", *SMALL_BATCHES]
IMDB = ["experiment=imdb_lstm", *IMDB_DATA]
TASKS = {
    "mnist": ["experiment=mnist_lstm", "data.val_size=40", *SMALL_BATCHES],
    "ptb": [
        "experiment=ptb_lab",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.seq_len=6",
        "model.truncated_bptt_steps=3",
    ],
    "imdb": IMDB,
    "imdb_bag": ["experiment=imdb_bag", *IMDB_DATA],
    # Packed both ways, masked by hand, attention: each takes the mask from the host.
    "imdb_bilstm_max": [*IMDB, "model.net.bidirectional=true", "model.net.pooling=max"],
    "imdb_own_rnn": [*IMDB, "model.net.cell=own_rnn", "model.net.bidirectional=true"],
    "imdb_transformer_mean": [*IMDB, "model.net.cell=transformer", "model.net.pooling=mean"],
}
# Cadenced reads (logging, gradient norms, loss checks) well beyond these runs; the progress bar on.
QUIET = [
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1000",
    "callbacks.grad_norm.every_n_steps=1000",
    "callbacks.nonfinite_loss.every_n_steps=1000",
    "trainer.enable_progress_bar=true",
]


def run_reads(
    make_cfg, tmp_path: Path, runs: tuple[tuple[int, int], ...], *overrides: str
) -> dict[int, DeviceReads]:
    """The device reads of one config cut to so many (training, validation) steps, by training steps."""
    reads = {}
    for steps, val_steps in runs:
        cfg = make_cfg(
            *overrides,
            f"+trainer.limit_train_batches={steps}",
            f"+trainer.limit_val_batches={val_steps}",
            output_dir=tmp_path / str(steps),
        )
        data = build.build_datamodule(cfg)
        data.prepare_data()
        data.setup("fit")
        assert len(data.train_dataloader()) >= steps and len(data.val_dataloader()) >= val_steps
        with DeviceReads() as mode:
            pipeline.train(cfg)
        reads[steps] = mode
    return reads


def reads_by_steps(make_cfg, tmp_path: Path, *overrides: str) -> dict[int, Counter[str]]:
    """Device reads by site of the same run cut to 3 and to 9 training steps (and 2 and 4 validation ones)."""
    runs = run_reads(make_cfg, tmp_path, ((3, 2), (9, 4)), *QUIET, *overrides)
    return {steps: mode.sites for steps, mode in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_training_steps_never_wait_for_the_device(make_cfg, tmp_path, task):
    """The device reads of a run do not grow with its number of steps: none is taken per training or
    validation step (the test split, fixed here, is evaluated by the same code as validation)."""
    reads = reads_by_steps(make_cfg, tmp_path, *TASKS[task])
    grown = {site: (reads[3][site], reads[9][site]) for site in reads[9] if reads[9][site] > reads[3][site]}
    assert grown == {}, "(reads in 3 steps, in 9 steps) of the sites that read per step"


# Logging and loss checks every 4 steps, the progress bar on; gradient norms read at the first step only.
EVERY_4_STEPS = [
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=4",
    "callbacks.nonfinite_loss.every_n_steps=4",
    "callbacks.grad_norm.every_n_steps=1000",
    "trainer.enable_progress_bar=true",
    "+callbacks.batch_index._target_=tests.helpers.TrainingBatch",
]


def reads_between_cadence(make_cfg, tmp_path, *overrides: str) -> dict[int, Counter[str]]:
    """The device reads, by site, of the training batches of a 12-step run that neither log nor check
    the loss (every 4th batch does), nor print the first gradient norms (batch 0)."""
    mode = run_reads(make_cfg, tmp_path, ((12, 2),), *EVERY_4_STEPS, *overrides)[12]
    assert set(mode.batches) <= set(range(12)) and 3 in mode.batches, "reads of the logging steps are seen"
    return {i: sites for i, sites in mode.batches.items() if i % 4 not in (0, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_steps_between_logging_steps_never_wait_for_the_device(make_cfg, tmp_path, task):
    """Once a step value is logged, the steps after it do not read it back (Lightning converts a
    progress-bar value to a number on every step: on a GPU a wait per step, unless it lies on the host)."""
    assert reads_between_cadence(make_cfg, tmp_path, *TASKS[task]) == {}


def test_the_cadence_check_sees_a_per_step_read(make_cfg, tmp_path):
    """The check above can fail: a callback reading the loss each step is caught."""
    reads = reads_between_cadence(
        make_cfg, tmp_path, *TASKS["mnist"], "+callbacks.reader._target_=tests.helpers.LossReader"
    )
    assert set(reads) == {1, 2, 5, 6, 9, 10}
    assert all(site.startswith("item at helpers.py:") for sites in reads.values() for site in sites), reads


def test_the_read_counter_sees_a_per_step_read(make_cfg, tmp_path):
    """The first check can fail: a callback reading the loss each step is caught."""
    reads = reads_by_steps(
        make_cfg, tmp_path, *TASKS["mnist"], "+callbacks.reader._target_=tests.helpers.LossReader"
    )
    grown = {site for site in reads[9] if reads[9][site] > reads[3][site]}
    assert grown and all(site.startswith("item at helpers.py:") for site in grown), grown


@pytest.mark.parametrize("task", ["mnist", "ptb", "imdb"])
def test_batches_are_pinned_when_a_gpu_trains(make_cfg, task):
    """`data.pin_memory=null` (the default) pins on a GPU only; true or false is kept as set."""

    def trainer_on(device: str) -> SimpleNamespace:
        return SimpleNamespace(
            strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0, world_size=1
        )

    data = build.build_datamodule(make_cfg(*TASKS[task]))
    data.prepare_data()
    data.setup("fit")
    pinned = {}
    for device in ("cuda", "cpu"):
        data.trainer = trainer_on(device)
        pinned[device] = (data.train_dataloader().pin_memory, data.val_dataloader().pin_memory)
    assert pinned == {"cuda": (True, True), "cpu": (False, False)}
    assert pin_memory(False, trainer_on("cuda")) is False and pin_memory(True, None) is True


@pytest.mark.parametrize("task", ["mnist", "ptb", "imdb_bag"])
def test_bf16_mixed_precision_trains(make_cfg, task):
    """Autocast is on in training: the head computes in bfloat16 (and the metrics stay finite)."""
    from tests.helpers import TrainingObserver

    TrainingObserver.head_dtypes = []
    observe = "+callbacks.observe._target_=tests.helpers.TrainingObserver"
    cfg = make_cfg(*TASKS[task], "debug=fdr", "trainer.precision=bf16-mixed", observe)
    _, metrics = pipeline.train(cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert TrainingObserver.head_dtypes and set(TrainingObserver.head_dtypes) == {torch.bfloat16}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mnist", "imdb_bag", "imdb_bilstm_max"])
def test_compiled_model_trains_and_keeps_the_checkpoint_keys(make_cfg, tmp_path, task):
    """`model.compile=true` compiles in place: its checkpoints load into an uncompiled model."""
    cfg = make_cfg(
        *TASKS[task],
        "debug=limit",
        "trainer.max_epochs=1",
        "model.compile=true",
        "model.compile_backend=aot_eager",  # the inductor backend needs a compiler toolchain
        "+callbacks.observe._target_=tests.helpers.TrainingObserver",
    )
    from tests.helpers import TrainingObserver

    TrainingObserver.compiled = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.train(cfg)
    assert TrainingObserver.compiled == [True], "the net was not compiled"
    assert not [w for w in caught if "running eagerly" in str(w.message)], "compile fell back to eager"
    task_module = build.build_task(cfg, build.build_datamodule(cfg))
    state = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert set(state["state_dict"]) == set(task_module.state_dict())


AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2"}  # oneDNN as on a CPU without AVX-512 and bf16 kernels


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bf16_mixed_precision_runs_recurrent_cells_on_cpus_without_bf16_kernels(bidirectional):
    """Run where oneDNN is held to AVX2: its bf16 LSTM fails there ("could not create a primitive
    descriptor"); the cell must run in float32 inside CPU autocast, packed or not."""
    script = f"""
import torch
from seqlab.models import SequenceClassifierNet
net = SequenceClassifierNet(num_classes=2, vocab_size=50, embed_dim=8, hidden_dim=8, bidirectional={bidirectional})
ids = torch.randint(2, 50, (3, 7)); mask = torch.ones(3, 7, dtype=torch.bool); mask[0, 4:] = False
with torch.autocast("cpu", dtype=torch.bfloat16):
    logits = net(ids, mask)
logits.float().sum().backward()
print("ok", logits.dtype)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **AVX2_ONLY}
    )
    assert result.returncode == 0 and "ok torch.bfloat16" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mnist", "ptb"])
def test_bf16_mixed_precision_trains_on_cpus_without_bf16_kernels(task, tmp_path, data_dir, monkeypatch):
    """`make test` on an AVX2-only CPU: `trainer.precision=bf16-mixed` trains end to end there too."""
    from tests.helpers import metrics_of, train_cli

    for name, value in AVX2_ONLY.items():
        monkeypatch.setenv(name, value)
    result = train_cli([*TASKS[task], "debug=limit", "trainer.precision=bf16-mixed"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics_of(tmp_path).values())
