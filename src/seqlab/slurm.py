"""What the SLURM controller says of a job (`squeue`): waiting, running, or unknown to it."""

from __future__ import annotations

import shutil
import subprocess
import time

# squeue's states of a job that is still to run (or to run again) and of one that runs.
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"}


def queue_states(job_ids: list[str], timeout_s: float = 10) -> dict[str, str] | None:
    """SLURM job id -> squeue's state, for the jobs the controller still knows (finished ones stay known
    for MinJobAge); None when squeue is missing or does not answer. An array task answers to both of
    its names: "123_4" (what submitit prints) and its own job id (its SLURM_JOB_ID, in a claim)."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    wanted = sorted({str(j).split("_")[0] for j in job_ids})
    cmd = ["squeue", "--noheader", "--array", "--states=all", "--format=%i %A %T", "--jobs", ",".join(wanted)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # All of them forgotten by the controller reads as an error; any other error: squeue cannot tell.
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        if len(fields := line.split()) >= 3:
            states[fields[0]] = states[fields[1]] = fields[2]
    return states


def is_queued(slurm_job: str) -> bool:
    """Whether squeue knows this job as waiting or running (False when it cannot tell)."""
    state = (queue_states([slurm_job]) or {}).get(slurm_job)
    return state in WAITING | RUNNING


def wait_while_queued(job_ids: list[str], poll_s: float = 2.0) -> None:
    """Return once squeue knows none of these jobs as waiting or running (at once when it cannot tell).
    A job that SLURM requeued (preemption, a failed node) may have left a task's result from its stopped
    attempt; only the end of its last attempt makes every task's result final."""
    while (states := queue_states(job_ids)) and any(states.get(str(j)) in WAITING | RUNNING for j in job_ids):
        time.sleep(poll_s)
