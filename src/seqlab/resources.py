"""Memory: refuse a config whose batches cannot fit before allocating them, and report an allocator's
refusal that still happens in one line naming the phase and the batch size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from seqlab.errors import ConfigError, TrainingError

GIB = 1 << 30


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this run on `device` (a GPU's free memory; MemAvailable on Linux), None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def check_batches_fit(memory: tuple[int, str, str] | None, device: torch.device) -> None:
    """Refuse, before any batch is made, a run whose batches need more memory than the device has.
    `memory` is the task's estimate (`TaskModule.batch_memory`): bytes, what the batch is, how to shrink it."""
    free = available_bytes(device)
    if memory is None or free is None or memory[0] <= free:
        return
    needed, batch, fix = memory
    raise ConfigError(
        f"{batch} need about {needed / GIB:.1f} GiB, more than the {free / GIB:.1f} GiB free on "
        f"{device.type}: {fix}"
    )


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


class OutOfMemoryReport(L.Callback):
    """Words an allocator's refusal (CPU or CUDA) while the trainer still knows the phase (Lightning
    resets its state before the error reaches the caller); `out_of_memory_reported` raises them."""

    def __init__(self, cfg: DictConfig) -> None:
        self.data = cfg.data
        self.report: str | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not is_out_of_memory(exception):
            return
        stage = trainer.state.stage.value if trainer.state.stage is not None else "setup"
        key = "batch_size" if stage == "train" or "eval_batch_size" not in self.data else "eval_batch_size"
        first = str(exception).strip().splitlines()[0]
        reason = first[first.index("can't allocate") :] if "can't allocate" in first else first
        self.report = (
            f"out of memory in {stage} at epoch {trainer.current_epoch} with data.{key}={self.data.get(key)} "
            f"({reason}); lower data.{key}, or model sizes"
        )


@contextlib.contextmanager
def out_of_memory_reported(report: OutOfMemoryReport) -> Iterator[None]:
    """An allocator's refusal inside the block becomes one TrainingError line (see OutOfMemoryReport)."""
    try:
        yield
    except RuntimeError as err:
        if report.report is None and not is_out_of_memory(err):
            raise
        raise TrainingError(report.report or f"out of memory ({str(err).splitlines()[0]})") from None
