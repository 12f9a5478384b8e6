"""Files that survive a kill: atomic checkpoint and text writes, and the random state that makes a resume exact."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, fsync, then rename over it.

    A kill at any moment leaves either the old checkpoint or the new one, never a truncated file
    (the rename is atomic on POSIX file systems; the fsyncs make it survive a power cut too).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except RuntimeError as err:  # torch's writer reports a failed file write as its own RuntimeError
            full = shutil.disk_usage(path.parent).free < (1 << 20)
            raise OSError(
                errno.ENOSPC if full else errno.EIO, "could not write the checkpoint", str(path)
            ) from err
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def last_checkpoint(run_dir: str | Path) -> Path:
    """A run dir's `checkpoints/last.ckpt`: what `resume=true` continues from (written every epoch by
    the callbacks config's `last_checkpoint`, and mid-epoch on a stop signal)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path` (named by process: concurrent jobs may share a
    path), then rename it over `path`: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:  # a write cut short (a full disk) leaves the previous file and no temporary one
        tmp.unlink(missing_ok=True)
    return path


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain data (`weights_only` loads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "python": [version, list(py_state), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
