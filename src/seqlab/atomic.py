"""Text files that survive a kill: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path` (named by process: concurrent jobs may share a
    path), then rename it over `path`: readers see the old file or the new one, never half of one."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """`write_text_atomic` for bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:  # a write cut short (a full disk) leaves the previous file and no temporary one
        tmp.unlink(missing_ok=True)
    return path
