"""A run dir's life: resume or refuse what is there, finished runs' metrics, one DDP job at a time in a sweep."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

import seqlab
from seqlab.checkpointing import last_checkpoint, write_text_atomic
from seqlab.errors import ConfigError
from seqlab.restore import read_checkpoint

log = logging.getLogger(__name__)


def read_metrics(output_dir: str | Path) -> dict[str, float] | None:
    path = Path(output_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_metrics(metrics: dict[str, float], output_dir: str | Path) -> Path:
    return write_text_atomic(
        Path(output_dir) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )


def machine() -> str:
    """This machine in one line (CPU model, torch threads, the vector instructions torch's kernels use, the
    oneDNN and MKL versions, torch and seqlab versions, the GPU if there is one), written beside a run's
    metrics as `machine.txt` so that its results say where and how they were measured."""
    cpuinfo = Path("/proc/cpuinfo")
    names = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in names if line.startswith("model name")), "")
    line = f"{cpu or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    line += f", {torch.backends.cpu.get_cpu_capability()} kernels"  # AVX512 and AVX2 machines differ slightly
    build = torch.__config__.show()  # the math libraries' versions appear only in this text
    for name, pattern in (("oneDNN", r"MKL-DNN v([\d.]+)"), ("MKL", r"Math Kernel Library Version ([\d.]+)")):
        if found := re.search(pattern, build):
            line += f", {name} {found.group(1)}"
    line += f", torch {torch.__version__}, seqlab {seqlab.__version__}"
    return line + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")


def write_machine(output_dir: str | Path) -> Path:
    return write_text_atomic(Path(output_dir) / "machine.txt", machine() + "\n")


def resume_checkpoint(cfg: DictConfig) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint training starts from, and its contents (read once, here): `ckpt_path`, else the run
    dir's last.ckpt when resuming (or the newest intact checkpoint, if that one is damaged).

    A SLURM requeue (SLURM_RESTART_COUNT > 0) resumes as `resume=true` does. Without either, a run
    dir that already holds checkpoints is refused rather than overwritten.
    """
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path), read_checkpoint(cfg.ckpt_path)
    last = last_checkpoint(cfg.paths.output_dir)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    if cfg.get("resume") or requeued:
        if last.is_file():
            intact, checkpoint = intact_checkpoint(last)
            log.info("Resuming from %s", intact)
            return str(intact), checkpoint
        # A requeue before the first checkpoint must start from scratch; a mistyped run dir should not
        # pass unnoticed, so this is a warning that names the dir.
        log.warning(
            "resume: %s holds no checkpoints/last.ckpt: training from scratch. If you meant to continue "
            "another run, give its run_name=... (or hydra.run.dir=...)",
            cfg.paths.output_dir,
        )
        return None
    if last.exists():
        raise ConfigError(
            f"{cfg.paths.output_dir} already holds the checkpoints of an earlier run: resume=true continues "
            "it; another run_name=... (or hydra.run.dir=...) starts a new one"
        )
    return None


def intact_checkpoint(last: Path) -> tuple[Path, dict[str, Any]]:
    """`last` and its contents when it reads; else the newest checkpoint beside it that does, after saying
    so in one line. The damaged file is kept aside as `<name>.damaged` (never deleted); none intact is a
    ConfigError."""
    try:
        return last, read_checkpoint(last)
    except ConfigError as err:
        damage = str(err).split(": ", 1)[-1]
    others = sorted(last.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in (p for p in others if p != last):
        try:
            checkpoint = read_checkpoint(candidate)
        except ConfigError:
            continue
        aside = last.with_name(last.name + ".damaged")
        last.replace(aside)
        log.warning(
            "resume: %s is damaged (%s); kept as %s, resuming from %s, the newest intact checkpoint",
            last,
            damage,
            aside.name,
            candidate,
        )
        return candidate, checkpoint
    rest = [p.name for p in others if p != last]
    raise ConfigError(
        f"resume: no intact checkpoint in {last.parent}: {last.name}: {damage}"
        + (f"; {', '.join(rest)} cannot be read either" if rest else "")
        + "; start the run again with another run_name=..., or put an intact checkpoint there"
    )


@contextlib.contextmanager
def distributed_job() -> Iterator[None]:
    """Run one job's DDP work so that the next job of a sweep, in the same process, starts clean.

    Inside a multirun, Lightning's DDP launcher would start the other ranks with this process's
    command line, i.e. the whole sweep again: for the length of the job the command line becomes
    this job's own overrides and `hydra.run.dir` its output dir. Afterwards the process group is
    destroyed and the environment variables Lightning set (LOCAL_RANK, MASTER_PORT...) are removed,
    or the next job would take itself for a child rank of this one.
    """
    environ = dict(os.environ)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        hydra_cfg = HydraConfig.get()
        argv, run_dir = sys.argv, hydra_cfg.run.dir
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
        with open_dict(hydra_cfg), read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if multirun:
            sys.argv = argv
            with open_dict(hydra_cfg), read_write(hydra_cfg):
                hydra_cfg.run.dir = run_dir
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            os.environ.clear()
            os.environ.update(environ)
