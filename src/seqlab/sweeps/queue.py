"""A sweep's SLURM jobs as the scheduler sees them: the submission record and `squeue`.

The SLURM launcher writes `<sweep dir>/slurm_jobs.json` when it submits (job dir name -> SLURM job id and
overrides), so that a job that has not started yet, and has no job dir, is still a row of the summary.
`with_queue` adds those rows and lets `squeue` say which jobs wait or run: a job on another host has a
claim that cannot be checked from here, and a requeued job's dir looks interrupted while it waits.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from seqlab.atomic import write_text_atomic
from seqlab.results import job_order
from seqlab.rundir.records import ERROR_FILE
from seqlab.slurm import RUNNING, WAITING, queue_states

RECORD = "slurm_jobs.json"


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


def with_queue(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (one per job dir) with the record's jobs that have no dir yet added, and the status of each
    job that has not ended by itself (done, failed, pruned) taken from squeue when it waits or runs."""
    # A search's workers are recorded (a rerun must not submit one still queued) but are not jobs of the
    # summary: their trials are.
    record = {name: entry for name, entry in read_record(sweep_dir).items() if not entry.get("worker")}
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
            row["status"] == "failed" and not ended_before(sweep_dir / name / ERROR_FILE, entry["submitted"])
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
    return sorted(by_name.values(), key=lambda row: job_order(row["job"]))


def ended_before(error_file: Path, submitted: str) -> bool:
    try:
        return error_file.stat().st_mtime < datetime.fromisoformat(submitted).timestamp()
    except (OSError, ValueError):
        return False
