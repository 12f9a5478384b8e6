"""One process per run dir: a run (or a sweep) claims its dir before anything is written there.

The claim is a file created with O_EXCL (`.seqlab_claim.json`: host, pid, process start time, SLURM job)
and removed when the run ends. A second live process asking for a claimed dir is refused with one line
naming the owner; a claim left by a dead process (killed, crashed, preempted) is taken over by
`resume=true` (or a SLURM requeue of the same job) with a warning. Each job of a sweep also claims its
job dir while it runs, so that a summary can tell a running job from a dead one.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.errors import ConfigError, os_error_message
from seqlab.rundir.records import CLAIM_FILE, keep_config_records, note_new_run_dir
from seqlab.slurm import is_queued


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a live owner from a new process that reuses its pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start": process_start(pid),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "since": datetime.now().isoformat(timespec="seconds"),
    }


def is_alive(owner: dict[str, Any]) -> bool | None:
    """True or False for an owner on this host; None where it cannot be told (another host)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return owner.get("start") is None or process_start(pid) == owner.get("start")


def describe(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('since')})"


def create_or_read_claim(folder: Path, path: Path) -> dict[str, Any] | None:
    """None when `path` is now this process's claim (created here, or ours already: a second entry
    point in this process); else the owner it names ({} when unreadable)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            json.dump(this_process(), f)
        atexit.register(release, folder)  # also when a signal or an error ends the process early
        return None
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # half-written by a process killed in the act: nobody holds it
    ours = owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()
    return None if ours else owner


def claim(folder: str | Path, resume: bool) -> Path:
    """Claim `folder` for this process, or raise a ConfigError that names its owner and what to do."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM_FILE
    for _ in range(2):  # a second try after taking over a dead process's claim
        owner = create_or_read_claim(folder, path)
        if owner is None:
            return path
        alive = is_alive(owner) if owner else False
        same_job = owner.get("slurm_job") is not None and owner.get("slurm_job") == os.environ.get(
            "SLURM_JOB_ID"
        )
        if alive and not same_job:
            raise ConfigError(
                f"{folder} is in use by {describe(owner)}: choose another run_name=... (or hydra.run.dir=...)"
            )
        if alive is None and not same_job:
            raise ConfigError(
                f"{folder} is claimed by {describe(owner)}, which cannot be checked from here: if that process "
                f"is gone, delete {path} and run again"
            )
        if not resume:
            raise ConfigError(
                f"{folder} was left by {describe(owner) if owner else 'a process'} that is gone: resume=true "
                "continues that run; another run_name=... (or hydra.run.dir=...) starts a new one"
            )
        # Printed: Hydra has not set up logging yet when a run claims its dir.
        whose = describe(owner) if owner else "a process"
        print(f"warning: {folder}: taking over the claim of {whose}, which is gone", file=sys.stderr)
        path.unlink(missing_ok=True)
    raise ConfigError(f"{folder}: another process claimed it at the same moment; run again")


def claim_job_dir(folder: str | Path) -> Path:
    """Claim a sweep job's dir, so that summaries can tell a running job (in a parallel or SLURM sweep,
    another process). The sweep's own claim decides resume and refusal, so a claim left by a process that
    is gone is taken over without a word; a live owner (on this host, or a SLURM job squeue knows as
    queued) refuses with a ConfigError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM_FILE
    for _ in range(2):
        owner = create_or_read_claim(folder, path)
        if owner is None:
            return path
        slurm_job = owner.get("slurm_job")
        same_job = slurm_job is not None and slurm_job == os.environ.get("SLURM_JOB_ID")
        alive = is_alive(owner) if owner else False
        if alive is None and slurm_job:
            alive = is_queued(slurm_job)
        if alive and not same_job:
            raise ConfigError(
                f"{folder} is in use by {describe(owner)}, which runs this job: let it finish (or stop it), "
                "then rerun the sweep"
            )
        path.unlink(missing_ok=True)
    raise ConfigError(f"{folder}: another process claimed it at the same moment; run again")


def held_by_another_live_process(folder: str | Path) -> bool:
    """Whether another process on this host, still running, has claimed `folder` (a job in progress)."""
    try:
        owner = json.loads((Path(folder) / CLAIM_FILE).read_text())
    except (OSError, ValueError):
        return False
    return owner.get("pid") != os.getpid() and is_alive(owner) is True


def release(folder: str | Path) -> None:
    path = Path(folder) / CLAIM_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def is_launching_process() -> bool:
    """Not a DDP child rank: those are started with the parent's run dir, which the parent holds."""
    ranks = (os.environ.get(k) for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
    return all(rank in (None, "", "0") for rank in ranks)


def resuming(config: DictConfig) -> bool:
    return bool(config.get("resume")) or int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


class RunDirClaim(Callback):
    """Hydra callback: a run claims `hydra.run.dir`, a sweep its `hydra.sweep.dir` (its job dirs lie
    inside), before Hydra writes anything there; each sweep job also claims its own dir while it runs (so
    a summary can tell it is running). All are released at the end."""

    def __init__(self) -> None:
        self.held: Path | None = None
        self.job_held: Path | None = None

    def _claim(self, folder: str, config: DictConfig, what: str) -> None:
        if is_launching_process():
            self.held = Path(folder)
            try:
                claim(self.held, resuming(config))
            except ConfigError as err:
                self.held = None
                raise SystemExit(f"error: {err}") from None
            except OSError as err:
                # Raised from a callback, Hydra would only warn, then fail creating the dir itself.
                self.held = None
                raise SystemExit(f"error: cannot create the {what}: {os_error_message(err)}") from None

    def _release(self) -> None:
        if self.held is not None:
            release(self.held)
            self.held = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_launching_process() and not Path(config.hydra.run.dir).exists():
            note_new_run_dir(config.hydra.run.dir)  # a refusal before any work removes it again
        self._claim(str(config.hydra.run.dir), config, "run dir")
        if resuming(config) and is_launching_process():  # before Hydra rewrites .hydra/: kept until accepted
            keep_config_records(config.hydra.run.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_launching_process() or config.hydra.mode != RunMode.MULTIRUN:
            return  # a single run's dir is claimed in on_run_start
        folder = Path(config.hydra.runtime.output_dir)
        try:
            claim_job_dir(folder)
        except ConfigError as err:  # raised from a callback, Hydra would only warn and run the job anyway
            raise SystemExit(f"error: {err}") from None
        self.job_held = folder

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.job_held is not None:
            release(self.job_held)
            self.job_held = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(str(config.hydra.sweep.dir), config, "sweep dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
