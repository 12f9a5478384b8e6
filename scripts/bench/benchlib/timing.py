"""Timing harness: loop timers, alternating repeats and paired ratios that noise hits alike."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lightning as L
import torch


@dataclass
class Timing:
    """Seconds of one fit() or validate(): inside its loop, and the whole call."""

    loop_s: float
    total_s: float
    steady_s: float = float("nan")  # see LoopTimer.steady_s

    @property
    def overhead_s(self) -> float:
        """The call's one-off set-up and tear-down: moving the model, binding the optimizer, hooks."""
        return self.total_s - self.loop_s


class LoopTimer(L.Callback):
    """Times the training loop (on_train_start to on_train_end) and the evaluation loop (on_validation_start
    to on_validation_end): every per-step hook, metric and log call is inside, the one-off set-up is not,
    just as the plain loops below start their clocks after building their optimizer and metrics.

    `steady_s` is the training loop without its epoch's start and end: from the end of batch
    `WARM_UP - 1` to the end of the last batch, i.e. `steady_steps` whole steps, each timed at the same
    point of the step. Per-step costs are read from it; what is left of the loop is once an epoch."""

    WARM_UP = 5

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = 0.0
        self._steady_from = self._last_step_end = 0.0
        self.steady_steps = 0

    @property
    def steady_s(self) -> float:
        return self._last_step_end - self._steady_from if self.steady_steps else float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Two device waits a run, at the window's ends: one a step would stall a GPU's queue.
        if batch_idx == self.WARM_UP - 1:
            synchronize()
            self._steady_from = time.perf_counter()
        elif batch_idx >= self.WARM_UP and batch_idx == trainer.num_training_batches - 1:
            synchronize()
            self._last_step_end = time.perf_counter()
            self.steady_steps = batch_idx - self.WARM_UP + 1

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


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def alternate(*runs: Callable[[], None], repeats: int) -> None:
    """Run each `repeats` times, in turns whose order rotates, so that noise hits every run alike."""
    for repeat in range(repeats):
        shift = repeat % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def paired_ratio(plain_times: list[float], seqlab_times: list[float]) -> float:
    """Median over the alternating repeats of plain/seqlab time: robust to a shared machine's noise
    (on the 2-core CPU here, two identical plain loops read 0.92-1.09 pair by pair, 0.98-0.99 as a median
    of 25 pairs: hence many short pairs rather than a few long ones)."""
    return median([p / s for p, s in zip(plain_times, seqlab_times, strict=True)])


@dataclass
class Comparison:
    """Seconds of the alternating repeats: the plain loop, the seqlab path, and the plain loop once more
    (the noise control: what a ratio between two identical runs reads on this machine); where asked, a
    bare LightningModule's training loop too."""

    plain_train: list[float]
    seqlab_train: list[Timing]
    control_train: list[float]
    plain_eval: list[float]
    seqlab_eval: list[Timing]
    control_eval: list[float]
    bare_train: list[Timing] = field(default_factory=list)
