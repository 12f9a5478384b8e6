"""What a run leaves in its run dir besides checkpoints: `metrics.json` (a finished run), `machine.txt`
(where it ran), `error.json` (why it failed; a stop signal's message marks it resumable)."""

from __future__ import annotations

import json
import platform
import re
import traceback
from pathlib import Path

import torch

import seqlab
from seqlab.atomic import write_text_atomic

ERROR_FILE = "error.json"
STOPPED = "stopped by a signal"  # the pipeline's message when a stop signal ended training


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


def record_failure(output_dir: str | Path, error: BaseException) -> None:
    """`error.json` in a failed job's dir: the exception's type, message and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    payload = {"type": type(error).__name__, "message": str(error), "where": where}
    write_text_atomic(Path(output_dir) / ERROR_FILE, json.dumps(payload, indent=2) + "\n")
