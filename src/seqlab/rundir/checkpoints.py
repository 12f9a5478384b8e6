"""A run dir's checkpoints: where the last one is, written so that a kill never leaves half of one."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

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
        except OSError as err:  # a flush or fsync names no file: name the checkpoint being written
            if err.filename:
                raise
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
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
