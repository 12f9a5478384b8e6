"""Finding, downloading and verifying data files: shared by every DataModule."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from seqlab.errors import DataError

log = logging.getLogger(__name__)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` while preparing its files: another process (a DDP rank, a
    parallel sweep job) that prepares the same folder waits, then finds the work done."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as lock:  # beside it: the folder holds data only
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def download(urls: list[str], dest: Path, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch the first URL that works into `dest`, verify its md5, and move it in place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
            if md5 is not None and (got := md5sum(Path(tmp))) != md5:
                raise DataError(f"checksum mismatch for {url}: md5 {got}, expected {md5}")
            os.replace(tmp, dest)
            return dest
        except Exception as err:  # try the next mirror, report all failures together
            errors.append(f"  {url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {dest.name}:\n" + "\n".join(errors))


def ensure_files(
    folder: Path,
    files: dict[str, str | None],
    mirrors: list[str],
    what: str,
    alternatives: tuple[str, ...] = (),
) -> None:
    """Make sure every file in `files` (name -> md5) is in `folder`, downloading the missing ones.

    A file also counts as present under one of the `alternatives` suffix rules (e.g. without '.gz').
    Without network, stop with a message naming the folder and the files expected there.
    """

    def missing() -> list[str]:
        return [
            name
            for name in files
            if not (folder / name).exists()
            and not any((folder / name.removesuffix(suffix)).exists() for suffix in alternatives)
        ]

    if not missing():  # the usual case, also for a read-only data folder: no lock needed
        return
    try:
        with folder_lock(folder):
            for name in missing():  # what another process has not fetched meanwhile
                download([m + name for m in mirrors], folder / name, files[name])
    except OSError as err:  # the folder cannot be written (read-only, no permission): name what is missing
        reason = f"{err.strerror} ({errno.errorcode.get(err.errno or 0, '?')})"
        raise DataError(
            f"{what} data: {', '.join(missing())} missing in {folder}, which cannot be written to download "
            f"them ({reason}); put the files there, or point paths.data_dir (SEQLAB_DATA_DIR) at a folder that has them"
        ) from None
    except DataError as err:
        raise DataError(
            f"{what} data not found in {folder} and the download failed.\n"
            f"Expected files: {', '.join(files)}.\n"
            f"Put them there (or point paths.data_dir / SEQLAB_DATA_DIR at a folder that has them).\n{err}"
        ) from None


VERIFY = ("warn", "strict", "off")
_warned: set[tuple] = set()  # a mismatch is reported once a process (PTB's dims and prepare_data both check)
_hashed: dict[tuple, str] = {}  # (path, size, mtime) -> md5, for this process


def verify_files(folder: Path, files: dict[str, str | None], what: str, verify: str = "warn") -> None:
    """Check the files of `files` (name -> published md5) present in `folder` against their checksums.

    A mismatch (a file from another corpus, a damaged copy) is one warning naming the file, or with
    `verify="strict"` a DataError; "off" skips the check. Files are hashed every run, once a process:
    MNIST's and PTB's 17.5 MB take 0.1 s (measured), less than a cache of their md5s would save.
    """
    if verify == "off":
        return
    for name, expected in files.items():
        path = folder / name
        if expected is None or not path.is_file():
            continue  # e.g. MNIST kept un-gzipped: the published md5s are of the .gz files
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _hashed:
            _hashed[key] = md5sum(path)
        if _hashed[key] != expected:
            message = (
                f"{what} file {path} has md5 {_hashed[key]}, not the published {expected}: another or a "
                "damaged copy, so results will not compare with published ones; replace it, or set "
                "data.verify=off if the change is yours"
            )
            if verify == "strict":
                raise DataError(message)
            if key not in _warned:
                _warned.add(key)
                log.warning(message)
