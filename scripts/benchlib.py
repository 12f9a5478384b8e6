"""Helpers shared by the scripts/bench_*.py benchmarks: one config, one Lightning path, one start-up timer."""

from __future__ import annotations

import copy
import ctypes
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from report_bench import CONTROL
from torch.utils.data import DataLoader

from seqlab import build
from seqlab.config import CONF_DIR

DEFAULT_DATA_DIR = os.environ.get("SEQLAB_DATA_DIR", str(Path(CONF_DIR).parent / "data"))
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def bench_cfg(experiment: str, data_dir: str, out: str, *overrides: str) -> DictConfig:
    """The experiment's config, trimmed to the training loop: no validation, checkpoints, logger or bar."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"experiment={experiment}", f"paths.data_dir={data_dir}", *overrides]
        )
    with open_dict(cfg):
        cfg.paths.output_dir = out
        cfg.trainer.update(
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            max_epochs=1,
            num_sanity_val_steps=0,
        )
        # Every callback with per-step hooks runs; the two ModelCheckpoints (which save at epoch ends)
        # do not. EpochHistory is a Lightning Checkpoint, hence enable_checkpointing.
        cfg.callbacks = {
            k: v for k, v in cfg.callbacks.items() if not str(v.get("_target_")).endswith("ModelCheckpoint")
        }
        cfg.trainer.enable_checkpointing = True
        cfg.logger = {}
    return cfg


def prepared_datamodule(cfg: DictConfig):
    datamodule = build.build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@dataclass
class Timing:
    """Seconds of one fit() or validate(): inside its loop, and the whole call."""

    loop_s: float
    total_s: float

    @property
    def overhead_s(self) -> float:
        """The call's one-off set-up and tear-down: moving the model, binding the optimizer, hooks."""
        return self.total_s - self.loop_s


class LoopTimer(L.Callback):
    """Times the training loop (on_train_start to on_train_end) and the evaluation loop (on_validation_start
    to on_validation_end): every per-step hook, metric and log call is inside, the one-off set-up is not,
    just as the plain loops below start their clocks after building their optimizer and metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = 0.0

    def _start(self) -> None:
        synchronize()
        self._started = time.perf_counter()

    def _stop(self, loop: str) -> None:
        synchronize()
        self.seconds[loop] = time.perf_counter() - self._started

    def on_train_start(self, trainer, pl_module) -> None:
        self._start()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop("train")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._stop("val")


def steady_allocator() -> None:
    """Fix glibc malloc's thresholds where a long run's own adjustments take them (large blocks kept
    for reuse, not handed back and mapped afresh).

    Left to adjust, they follow whatever ran before in this process, so one loop would get reused memory
    for its large tensors and the next freshly mapped pages (faults and zeroing every step): measured on
    PTB, a 5-10% swing of the seqlab/plain ratio between two versions of code that did the same work.
    Throughput comparisons call this first; the memory probes do not (their RSS is a real run's)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to fix
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's ceiling for the adjusting threshold
    libc.mallopt(m_trim_threshold, 256 * 2**20)


def serving(datamodule, batches: list):
    """The (set-up) data module serving `batches` as its training and validation data: a run on them takes
    its batch-transfer hook (IMDB's keeps the mask on the host) as a real run does."""
    served = copy.copy(datamodule)
    served.train_dataloader = served.val_dataloader = lambda: DataLoader(batches, batch_size=None)
    served.prepare_data = served.setup = lambda *args, **kwargs: None
    return served


def lightning_fit(cfg: DictConfig, datamodule, init_state: dict, batches: list) -> tuple[Timing, object]:
    """The seqlab path training on `batches` from the given initial weights: its timing, and the task."""
    task = build.build_task(cfg, datamodule)
    task.net.load_state_dict(init_state)
    timer = LoopTimer()
    trainer = build.build_trainer(cfg, task, [*build.build_callbacks(cfg), timer], [])
    start = time.perf_counter()
    trainer.fit(task, datamodule=serving(datamodule, batches))
    synchronize()
    return Timing(timer.seconds["train"], time.perf_counter() - start), task


def add_common_args(parser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--json", type=Path, help="also write the figures to this file (make bench collects them)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for the benchmarked config, e.g. data.val_size=40"
    )


def startup_time(experiment: str, data_dir: str, *overrides: str) -> float:
    """Start-to-exit seconds of `seqlab.train experiment=... debug=fdr` in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "seqlab.train",
                f"experiment={experiment}",
                "debug=fdr",
                f"hydra.run.dir={out}",
                *overrides,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "SEQLAB_DATA_DIR": data_dir},
        )
        return time.perf_counter() - start


class Figures:
    """Rows of one benchmark (`task, measure, seqlab, plain, ratio, unit, goal`), printed and written as JSON."""

    def __init__(self, task: str) -> None:
        self.task, self.rows = task, []

    def add(
        self,
        measure: str,
        seqlab: float,
        unit: str,
        plain: float | None = None,
        ratio: float | None = None,
        goal: str = "",
    ) -> None:
        if ratio is None and plain:
            ratio = seqlab / plain
        row = {"task": self.task, "measure": measure, "seqlab": seqlab, "plain": plain, "ratio": ratio}
        self.rows.append(row | {"unit": unit, "goal": goal})
        both = f"  plain {plain:,.1f}  ratio {ratio:.3f}" if plain is not None else ""
        print(f"{measure:<40} {seqlab:12,.2f} {unit}{both}  {goal}")

    def write(self, path: Path | None, **extra: object) -> None:
        cuda = (
            {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
        )
        self.add("peak RSS of this benchmark process", peak_rss_mb(), "MB")
        if cuda:
            self.add("peak CUDA memory allocated", cuda["cuda_peak_mb"], "MB")
        if path is not None:
            payload = {
                "task": self.task,
                "device": device_name(),
                "torch": torch.__version__,
                "rows": self.rows,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload | extra, indent=2) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def header(name: str) -> str:
    return f"# {name} | torch {torch.__version__} | {torch.get_num_threads()} threads | {device_name()}"


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def alternate(*runs: Callable[[], None], repeats: int) -> None:
    """Run each `repeats` times, in turns whose order rotates, so that noise hits every run alike."""
    for repeat in range(repeats):
        shift = repeat % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run()


@dataclass
class Comparison:
    """Seconds of the alternating repeats: the plain loop, the seqlab path, and the plain loop once more
    (the noise control: what a ratio between two identical runs reads on this machine)."""

    plain_train: list[float]
    seqlab_train: list[Timing]
    control_train: list[float]
    plain_eval: list[float]
    seqlab_eval: list[Timing]
    control_eval: list[float]


def compare_with_plain(
    cfg: DictConfig,
    datamodule,
    init_state: dict,
    batches: list,
    val: list,
    plain: Callable[[], tuple[float, float]],
    repeats: int,
) -> Comparison:
    """Alternating repeats of the seqlab path (fit on `batches` from `init_state`, then validate on `val`)
    and, twice, of `plain` (its train and eval seconds)."""
    result = Comparison([], [], [], [], [], [])

    def seqlab_run() -> None:
        timing, task = lightning_fit(cfg, datamodule, init_state, batches)
        result.seqlab_train.append(timing)
        result.seqlab_eval.append(lightning_validate(cfg, datamodule, task, val))

    def plain_run(train: list[float], evaluation: list[float]) -> Callable[[], None]:
        def run() -> None:
            train_s, eval_s = plain()
            train.append(train_s)
            evaluation.append(eval_s)

        return run

    alternate(
        plain_run(result.plain_train, result.plain_eval),
        seqlab_run,
        plain_run(result.control_train, result.control_eval),
        repeats=repeats,
    )
    return result


def paired_ratio(plain_times: list[float], seqlab_times: list[float]) -> float:
    """Median over the alternating repeats of plain/seqlab time: robust to a shared machine's noise
    (on the 2-core CPU here, two identical plain loops read 0.92-1.09 pair by pair, 0.98-0.99 as a median
    of 25 pairs: hence many short pairs rather than a few long ones)."""
    return median([p / s for p, s in zip(plain_times, seqlab_times, strict=True)])


RATIO_GOAL = "goal >= 0.95 (median of paired repeats)"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def add_comparison(
    figures: Figures, measure: str, amount: float, unit: str, run: Comparison, loop: str
) -> None:
    """Rows of one loop (`train` or `eval`) of `run`: seqlab and plain throughput (median repeat each) with
    the median of the paired ratios; the same for the plain loop against itself (the noise control); then
    the seqlab call's one-off set-up + tear-down seconds, which the loop figures leave out."""
    plain_s, control_s = getattr(run, f"plain_{loop}"), getattr(run, f"control_{loop}")
    seqlab_s = [t.loop_s for t in getattr(run, f"seqlab_{loop}")]
    figures.add(
        measure,
        amount / median(seqlab_s),
        unit,
        amount / median(plain_s),
        paired_ratio(plain_s, seqlab_s),
        RATIO_GOAL,
    )
    figures.add(
        f"{measure}: {CONTROL}",
        amount / median(control_s),
        unit,
        amount / median(plain_s),
        paired_ratio(plain_s, control_s),
        "1.0 but for noise: how far a ratio strays here by chance",
    )
    call = "fit()" if loop == "train" else "validate()"
    overheads = [t.overhead_s for t in getattr(run, f"seqlab_{loop}")]
    figures.add(f"{call} set-up + tear-down, outside the loop", median(overheads), "s")


def plain_device(cfg: DictConfig) -> torch.device:
    """Where the plain loop runs: the GPU when the seqlab path uses one (trainer=gpu), else the CPU."""
    gpu = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def to_device(batch: tuple, device: torch.device) -> tuple:
    """Inputs and targets to the device; a mask stays on the host, where packing wants the lengths (as
    seqlab's IMDB data module keeps it)."""
    return (*(t.to(device, non_blocking=True) for t in batch[:2]), *batch[2:])


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.no_grad()
def plain_classifier_eval(net: torch.nn.Module, batches: list, cfg: DictConfig) -> float:
    """Seconds for a plain evaluation pass doing seqlab's work: mean loss, accuracy, macro F1, AUROC and
    the confusion matrix, with torchmetrics as a hand-written loop would use them."""
    import torch.nn.functional as F
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassAUROC,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
    )

    device = plain_device(cfg)
    net.to(device).eval()
    n, fast = net.head.out_features, {"validate_args": False}  # as seqlab's: no per-batch input checks
    metrics = [
        m.to(device)
        for m in (
            MulticlassAccuracy(n, average="micro", **fast),
            MulticlassF1Score(n, **fast),
            MulticlassAUROC(n, **fast),
            MulticlassConfusionMatrix(n, **fast),
        )
    ]
    loss_sum, count = torch.zeros((), dtype=torch.float64, device=device), 0
    start = time.perf_counter()
    for batch in batches:
        batch = to_device(batch, device)
        logits = net(batch[0], batch[2] if len(batch) > 2 else None)
        loss_sum += F.cross_entropy(logits, batch[1], reduction="sum").double()
        count += len(batch[1])
        probs = logits.softmax(-1)
        for metric in metrics:
            metric.update(probs, batch[1])
    results = [loss_sum / count, *(m.compute() for m in metrics)]
    synchronize()
    del results
    return time.perf_counter() - start


def lightning_validate(cfg: DictConfig, datamodule, task, batches: list) -> Timing:
    """The seqlab path evaluating `batches` with the task's metrics (a classifier: loss, accuracy, F1,
    AUROC, confusion matrix; a language model: the exact NLL)."""
    timer = LoopTimer()
    trainer = build.build_trainer(cfg, task, [timer], [])
    trainer.limit_val_batches = 1.0
    start = time.perf_counter()
    trainer.validate(task, datamodule=serving(datamodule, batches), verbose=False)
    synchronize()
    return Timing(timer.seconds["val"], time.perf_counter() - start)


def plain_classifier_loop(net: torch.nn.Module, batches: list, cfg: DictConfig) -> float:
    """The plain PyTorch loop a user would write: the experiment's optimizer and clipping, and the epoch's
    mean loss and accuracy kept on the device (as seqlab keeps them), nothing else."""
    import hydra.utils
    import torch.nn.functional as F
    from torchmetrics.classification import MulticlassAccuracy

    device = plain_device(cfg)
    net.to(device).train()
    optimizer = hydra.utils.instantiate(cfg.optimizer)(params=net.parameters())
    clip = cfg.trainer.gradient_clip_val
    accuracy = MulticlassAccuracy(net.head.out_features, average="micro", validate_args=False).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start = time.perf_counter()
    for batch in batches:  # (inputs, targets) or (inputs, targets, mask)
        batch = to_device(batch, device)
        logits = net(batch[0], batch[2] if len(batch) > 2 else None)
        loss = F.cross_entropy(logits, batch[1])
        accuracy.update(logits.argmax(-1), batch[1])
        loss_sum += loss.detach().double() * len(batch[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
    synchronize()
    return time.perf_counter() - start
