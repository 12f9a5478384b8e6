"""A summary of a sweep submitted to SLURM: jobs without a dir yet come from the submission record, and
squeue's word decides which wait and which run (squeue itself is replaced here; tests/test_slurm_sweeps.py
asks a real one)."""

from __future__ import annotations

import pytest

from seqlab.sweeps import queue
from seqlab.sweeps.summary import summarize


@pytest.fixture
def submitted(tmp_path):
    overrides = ["experiment=mnist_rnn"]
    queue.add_to_record(
        tmp_path,
        {str(n): {"num": n, "slurm_job": f"5_{n}", "overrides": [*overrides, f"seed={n}"]} for n in range(3)},
    )
    return tmp_path


def statuses(sweep_dir) -> list[tuple[str, str, str]]:
    return [(r["job"], r["status"], r["error"]) for r in summarize(sweep_dir, plots=False)]


def test_jobs_not_started_are_pending_running_or_gone_as_squeue_says(submitted, monkeypatch):
    monkeypatch.setattr(
        queue, "queue_states", lambda ids: {"5_0": "PENDING", "5_1": "RUNNING", "5_2": "CANCELLED"}
    )
    assert statuses(submitted) == [
        ("0", "pending", "SLURM job 5_0 pending"),
        ("1", "running", "SLURM job 5_1 running"),
        (
            "2",
            "incomplete",
            "SLURM job 5_2 ended CANCELLED and never started: rerun the sweep to submit it again",
        ),
    ]
    table = (submitted / "summary.md").read_text()
    assert "0 of 3 jobs done; 1 failed or incomplete; 1 running; 1 pending" in table
    assert "| job | status | seed |" in table  # the swept value of jobs that have no dir yet


def test_without_squeue_a_job_not_started_reads_pending(submitted, monkeypatch):
    monkeypatch.setattr(queue, "queue_states", lambda ids: None)
    assert [s for _, s, _ in statuses(submitted)] == ["pending"] * 3
    assert "SLURM job 5_0 (squeue cannot tell more)" in (submitted / "summary.md").read_text()


def test_a_resubmission_replaces_the_record_of_that_job_only(submitted):
    queue.add_to_record(submitted, {"1": {"num": 1, "slurm_job": "9_0", "overrides": ["seed=1"]}})
    assert {name: job["slurm_job"] for name, job in queue.read_record(submitted).items()} == {
        "0": "5_0",
        "1": "9_0",
        "2": "5_2",
    }


def test_a_failed_job_submitted_again_reads_pending_and_one_that_just_failed_reads_failed(
    submitted, monkeypatch
):
    import json
    import os

    for name in ("0", "1"):
        job = submitted / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text("optimized_metric: val/acc\n")
        (job / "error.json").write_text(json.dumps({"type": "ConfigError", "message": "bad", "where": ""}))
    old = (submitted / "0" / "error.json").stat().st_mtime - 60
    os.utime(submitted / "0" / "error.json", (old, old))  # failed a minute before its resubmission
    monkeypatch.setattr(queue, "queue_states", lambda ids: {"5_0": "PENDING", "5_1": "RUNNING"})
    assert [s for _, s, _ in statuses(submitted)][:2] == ["pending", "failed"]


def test_wait_false_with_a_search_is_refused_in_one_line_before_anything_is_submitted(tmp_path, monkeypatch):
    """A search needs each trial's result before it draws the next: submitting and returning would leave
    it nothing to learn from. The launcher refuses before submitting (or making the sweep dir)."""
    from omegaconf import OmegaConf

    from seqlab.sweeps.slurm_launcher import SlurmLauncher

    launcher = SlurmLauncher(wait=False, submitit_folder=str(tmp_path / ".submitit"))
    launcher.config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"_target_": "hydra_plugins.seqlab_optuna.OptunaSweeper"},
                "sweep": {"dir": str(tmp_path / "s")},
            }
        }
    )
    submitted = []
    monkeypatch.setattr(SlurmLauncher, "submit", lambda *a, **k: submitted.append(a), raising=False)
    with pytest.raises(SystemExit) as ended:
        launcher.launch([["seed=0"]], 0)
    assert str(ended.value).startswith(
        "error: hydra.launcher.wait=false submits the jobs and returns, but the sweeper"
    )
    assert "leave wait=true (the default) for a search" in str(ended.value)
    assert not submitted and not (tmp_path / "s").exists()


def test_a_waiting_sweep_reads_results_only_once_slurm_has_ended_every_attempt(monkeypatch):
    """A job requeued after a node failure passes through PENDING and RUNNING again: the launcher waits
    through both; without squeue it does not wait at all."""
    from seqlab import slurm

    answers = iter(
        [{"7_0": "RUNNING"}, {"7_0": "PENDING"}, {"7_0": "RUNNING"}, {"7_0": "COMPLETED"}, {"7_0": "RUNNING"}]
    )
    asked = []
    monkeypatch.setattr(slurm, "queue_states", lambda ids: asked.append(ids) or next(answers))
    slurm.wait_while_queued(["7_0"], poll_s=0)
    assert len(asked) == 4, "returned at the first answer without the job in the queue"
    monkeypatch.setattr(slurm, "queue_states", lambda ids: None)
    slurm.wait_while_queued(["7_0"], poll_s=0)


def test_a_job_whose_tasks_differ_from_its_trainers_ranks_stops_before_training(monkeypatch):
    """The same check inside the job, for an allocation that differs from what was asked."""
    from omegaconf import OmegaConf

    from seqlab.errors import ConfigError
    from seqlab.sweeps.slurm_launcher import RanksMatchTasks

    ran = []
    task = RanksMatchTasks(ran.append)
    cfg = OmegaConf.create({"trainer": {"devices": 1, "num_nodes": 2}})
    monkeypatch.setenv("SLURM_NTASKS", "2")
    task(cfg)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(ConfigError, match="SLURM starts 4 tasks .* trainer.devices=1 x trainer.num_nodes=2"):
        task(cfg)
    assert ran == [cfg]
