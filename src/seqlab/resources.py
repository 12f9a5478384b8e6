"""This machine's resources. Memory: refuse a config whose batches cannot fit before allocating them, and
report an allocator's refusal that still happens in one line naming the phase and the batch size. Cores
and GPUs: how a parallel sweep shares them among its jobs (seqlab.sweeps.parallel_launcher)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

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


def available_cores() -> int:
    """The CPUs this process may run on (taskset, cgroup cpusets and SLURM allocations count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan(n_jobs: Any, total: int, cores: int) -> tuple[int, int]:
    """Jobs at once and torch threads per job; a bad n_jobs ends the sweep in one line, more jobs at once
    than cores warns in one."""
    if n_jobs is None:
        n_jobs = cores
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise SystemExit(
            f"error: hydra.launcher.n_jobs={n_jobs!r}: give the number of jobs to run at once, a whole number "
            "of at least 1 (or null: one per core)"
        )
    at_once = min(n_jobs, total)
    if at_once > cores:
        print(
            f"warning: hydra.launcher.n_jobs={n_jobs} runs {at_once} jobs at once on {cores} cores: they share "
            f"them (1 thread each) and each runs slower; n_jobs={cores} gives each a core",
            file=sys.stderr,
        )
    return at_once, max(1, cores // at_once)


def visible_gpus(config: DictConfig) -> list[str]:
    """The GPUs the jobs may be given (none for a CPU trainer): CUDA_VISIBLE_DEVICES's entries when it is
    set, else every GPU torch finds, counted in a child process (CUDA initialised in the sweep's process
    would not survive the jobs' fork)."""
    if str(OmegaConf.select(config, "trainer.accelerator", default="auto")) not in ("auto", "gpu", "cuda"):
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() not in ("", "-1")]
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        return []
    probe = [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"]
    counted = subprocess.run(probe, capture_output=True, text=True, timeout=300).stdout.strip()
    return [str(i) for i in range(int(counted))] if counted.isdigit() else []


def gpu_groups(n_jobs: Any, gpus: list[str], per_job: int) -> list[list[str]]:
    """The GPUs each job at once gets, `per_job` apiece (trainer.devices); a job waits for a group to be
    free, and an n_jobs above the groups there are is refused in one line."""
    groups = [gpus[i : i + per_job] for i in range(0, len(gpus) - per_job + 1, per_job)]
    if not groups:
        raise SystemExit(
            f"error: each job asks for {per_job} GPUs (trainer.devices) but {len(gpus)} are visible "
            f"({','.join(gpus) or 'none'}): lower trainer.devices or set CUDA_VISIBLE_DEVICES"
        )
    if isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and n_jobs > len(groups):
        raise SystemExit(
            f"error: hydra.launcher.n_jobs={n_jobs} jobs at once, each with its own {per_job} GPU(s), but "
            f"{len(gpus)} GPUs are visible ({','.join(gpus)}): use n_jobs={len(groups)} or null "
            "(one job per GPU group; the other jobs wait for a GPU)"
        )
    return groups
