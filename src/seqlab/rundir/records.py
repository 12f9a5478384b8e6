"""What a run leaves in its run dir: `checkpoints/last.ckpt` (where a resume starts), `metrics.json` (a finished run), `machine.txt`
(where it ran), `error.json` (why it failed; a stop signal's message marks it resumable), and the
config records Hydra writes (`.hydra/*.yaml`), which a refused resume puts back as they were."""

from __future__ import annotations

import json
import platform
import re
import shutil
import traceback
from pathlib import Path

import seqlab
from seqlab.atomic import write_bytes_atomic, write_text_atomic
from seqlab.errors import DataError

ERROR_FILE = "error.json"
CLAIM_FILE = ".seqlab_claim.json"  # rundir/claims.py's: one process per run dir
STOPPED = "stopped by a signal"  # the pipeline's message when a stop signal ended training


def last_checkpoint(run_dir: str | Path) -> Path:
    """A run dir's `checkpoints/last.ckpt`: what `resume=true` continues from (written every epoch by
    the callbacks config's `last_checkpoint`, and mid-epoch on a stop signal)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def read_metrics(output_dir: str | Path) -> dict[str, float] | None:
    """A finished run's metrics; None where there are none. A damaged file (cut short, not JSON, not a
    mapping of numbers) is a DataError naming it: the run did not finish cleanly, rerunning it does."""
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or not all(isinstance(v, int | float) for v in metrics.values()):
            raise ValueError("not a mapping of metric names to numbers")
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is damaged ({type(err).__name__}: {err}); delete it to rerun the run"
        ) from None
    return metrics


def finished(output_dir: str | Path) -> bool:
    """Whether a run dir holds an intact metrics.json (a damaged one is not a finished run)."""
    try:
        return read_metrics(output_dir) is not None
    except DataError:
        return False


# The `.hydra/*.yaml` of a run dir being resumed, as they were before Hydra rewrote them at this start.
_kept: dict[Path, bytes] = {}


def keep_config_records(run_dir: str | Path) -> None:
    """Before Hydra writes the new config into a resumed run's dir: remember the old records."""
    _kept.clear()
    _kept.update({p: p.read_bytes() for p in (Path(run_dir) / ".hydra").glob("*.yaml") if p.is_file()})


def accept_config_records() -> None:
    """The resume was accepted (training starts): the new records stand."""
    _kept.clear()


def restore_config_records() -> None:
    """The run was refused before any work: put a resumed dir's records back as they were, and remove a
    dir this start made that holds nothing but Hydra's records and the log."""
    for path, data in _kept.items():
        write_bytes_atomic(path, data)
    _kept.clear()
    for folder in _new_dirs:
        kept = (".hydra", CLAIM_FILE)
        if folder.is_dir() and all(p.name in kept or p.suffix == ".log" for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
    _new_dirs.clear()


_new_dirs: list[Path] = []  # run dirs this process made (a single run's)


def note_new_run_dir(folder: str | Path) -> None:
    _new_dirs.append(Path(folder))


def write_metrics(metrics: dict[str, float], output_dir: str | Path) -> Path:
    return write_text_atomic(
        Path(output_dir) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )


def machine() -> str:
    """This machine in one line (CPU model, torch threads, the vector instructions torch's kernels use, the
    oneDNN and MKL versions, torch and seqlab versions, the GPU if there is one), written beside a run's
    metrics as `machine.txt` so that its results say where and how they were measured."""
    import torch  # here: what reads run dirs (summaries, seqlab.runs) does not need torch

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


def read_error(output_dir: str | Path) -> dict[str, str] | None:
    """A failed run's `error.json`; a damaged one reads as a failure saying so."""
    path = Path(output_dir) / ERROR_FILE
    if not path.is_file():
        return None
    try:
        error = json.loads(path.read_text())
        return {"type": str(error["type"]), "message": str(error["message"])}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        return {"type": "DamagedRecord", "message": f"{path} is damaged ({type(err).__name__}: {err})"}


def record_failure(output_dir: str | Path, error: BaseException) -> None:
    """`error.json` in a failed job's dir: the exception's type, message and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    payload = {"type": type(error).__name__, "message": str(error), "where": where}
    write_text_atomic(Path(output_dir) / ERROR_FILE, json.dumps(payload, indent=2) + "\n")
