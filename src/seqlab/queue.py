"""A sweep's SLURM jobs as the scheduler sees them: the submission record and `squeue`.

The SLURM launcher writes `<sweep dir>/slurm_jobs.json` when it submits (job dir name -> SLURM job id and
overrides), so that a job that has not started yet, and has no job dir, is still a row of the summary.
`with_queue` adds those rows and lets `squeue` say which jobs wait or run: a job on another host has a
claim that cannot be checked from here, and a requeued job's dir looks interrupted while it waits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from seqlab.checkpointing import write_text_atomic

RECORD = "slurm_jobs.json"
# squeue's states of a job that is still to run (or to run again) and of one that runs.
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"}


def read_record(sweep_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Job dir name -> {"num", "slurm_job", "overrides", "submitted"}; empty when nothing was submitted."""
    path = Path(sweep_dir) / RECORD
    try:
        return json.loads(path.read_text())["jobs"]
    except (OSError, ValueError, KeyError):
        return {}


def add_to_record(sweep_dir: str | Path, entries: dict[str, dict[str, Any]]) -> None:
    """Record (or replace, for a resubmitted job) these jobs; the submitting process holds the sweep dir's
    claim, so no other process writes the record meanwhile."""
    now = datetime.now().isoformat(timespec="seconds")
    jobs = read_record(sweep_dir) | {name: {**entry, "submitted": now} for name, entry in entries.items()}
    write_text_atomic(Path(sweep_dir) / RECORD, json.dumps({"jobs": jobs}, indent=1) + "\n")


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


def with_queue(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (one per job dir) with the record's jobs that have no dir yet added, and the status of each
    job that has not ended by itself (done, failed, pruned) taken from squeue when it waits or runs."""
    record = read_record(sweep_dir)
    if not record:
        return rows
    states = queue_states([entry["slurm_job"] for entry in record.values()])
    by_name = {row["job"]: row for row in rows}
    for name, entry in record.items():
        if name not in by_name:
            by_name[name] = {"job": name, "overrides": entry["overrides"], "metric": None, "history": []}
            by_name[name] |= {"epochs": 0, "status": "incomplete"}
        row, slurm_job = by_name[name], entry["slurm_job"]
        state = None if states is None else states.get(slurm_job)
        # A job that has just failed may still read as running in squeue for a moment; a failure from
        # before the job was submitted again is the earlier attempt's.
        if row["status"] in ("done", "pruned") or (
            row["status"] == "failed"
            and not ended_before(sweep_dir / name / "error.json", entry["submitted"])
        ):
            continue
        if state in WAITING:
            row["status"], row["error"] = "pending", f"SLURM job {slurm_job} {state.lower()}"
        elif state in RUNNING and row["status"] != "running":
            row["status"], row["error"] = "running", f"SLURM job {slurm_job} running"
        elif name not in {r["job"] for r in rows}:  # submitted, never started
            if states is None:
                row["status"], row["error"] = "pending", f"SLURM job {slurm_job} (squeue cannot tell more)"
            else:
                ended = f"ended {state}" if state else "is not in the queue"
                row["error"] = (
                    f"SLURM job {slurm_job} {ended} and never started: rerun the sweep to submit it again"
                )
        elif state and row["status"] in ("incomplete", "interrupted (resumable)") and state != "COMPLETED":
            row["error"] = f"{row.get('error', '')} (SLURM job {slurm_job}: {state})".strip()
    return sorted(by_name.values(), key=job_order)


def ended_before(error_file: Path, submitted: str) -> bool:
    try:
        return error_file.stat().st_mtime < datetime.fromisoformat(submitted).timestamp()
    except (OSError, ValueError):
        return False


def job_order(row: dict[str, Any]) -> tuple[bool, int, str]:
    name = row["job"]
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)
