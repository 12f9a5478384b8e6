"""Sweeps through a real SLURM (`scripts/cluster/slurm_cluster.sh start`) that do not hold a terminal, and DDP jobs
whose ranks are SLURM tasks. Every wait has an outer time limit: without slurmdbd, sacct fails and
submitit cannot tell a cancelled job's state, so its launcher could wait forever."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY_MNIST, metrics_of, read_summary, sweep_command, train_cli
from tests.test_slurm import LAUNCHER, SLURM_TEST_MARKS, finish, start_sweep

pytestmark = SLURM_TEST_MARKS


def sweep_cmd(args: list[str], sweep_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    cmd = sweep_command([*LAUNCHER, *args], sweep_dir, data_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def summarize_cli(sweep_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "seqlab.summarize", "--no-plots", str(sweep_dir)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def wait_until_out_of_the_queue(job_ids: list[str], seconds: float) -> None:
    from seqlab.slurm import RUNNING, WAITING, queue_states

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        states = queue_states(job_ids) or {}
        if not any(states.get(job) in WAITING | RUNNING for job in job_ids):
            return
        time.sleep(1)
    subprocess.run(["scancel", *job_ids], check=False)
    pytest.fail(f"SLURM jobs {job_ids} did not end within {seconds:.0f} s (cancelled)")


def test_a_sweep_submitted_without_waiting_returns_at_once_and_its_jobs_write_the_summary(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    args = [*TINY_MNIST, "model.net.hidden_dim=8,16", "hydra.launcher.wait=false"]
    started = time.monotonic()
    submitted = sweep_cmd(args, sweep_dir, data_dir)
    seconds = time.monotonic() - started
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert seconds < 30, f"the submission took {seconds:.0f} s"
    line = next(s for s in submitted.stdout.splitlines() if s.startswith("Submitted 2 of 2 jobs to SLURM"))
    ids = dict(re.findall(r"(\d+): (\d+_\d+)", line))
    assert sorted(ids) == ["0", "1"] and f"Sweep dir: {sweep_dir}" in submitted.stdout

    meanwhile = summarize_cli(sweep_dir)
    assert meanwhile.returncode == 0, meanwhile.stderr
    shown_then = re.findall(r"^\| (\d+) \| (\w+) \|", meanwhile.stdout, re.MULTILINE)
    assert [job for job, _ in shown_then] == ["0", "1"], meanwhile.stdout
    assert {status for _, status in shown_then} <= {"pending", "running", "done"}, meanwhile.stdout
    wait_until_out_of_the_queue(list(ids.values()), 240)

    # Written by the jobs as they ended, the last of them seeing both done.
    assert [(r["job"], r["status"]) for r in read_summary(sweep_dir)] == [("0", "done"), ("1", "done")]
    assert "2 of 2 jobs done\n" in (sweep_dir / "summary.md").read_text()
    shown = summarize_cli(sweep_dir)
    assert "| 0 | done | 8 |" in shown.stdout and "| 1 | done | 16 |" in shown.stdout

    again = sweep_cmd(args, sweep_dir, data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    for job in ("0", "1"):
        assert f"job {job} is done (metrics.json): not submitted again" in again.stdout
    assert "Submitted 0 of 2 jobs" in again.stdout


DDP_JOB = [*TINY_MNIST, "model.net.dropout=0.0", "data.batch_size=8", "trainer=ddp_cpu"]
RANKS = ["+callbacks.ranks._target_=tests.helpers.RankRecord"]


def ranks(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / "ranks" / f"{r}.json").read_text()) for r in range(2)]


def test_a_ddp_job_runs_its_two_ranks_as_slurm_tasks_and_matches_lightnings_own_two_processes(
    tmp_path, data_dir, monkeypatch
):
    """tasks_per_node=2: srun starts both ranks, Lightning's SLURM environment joins them and starts none
    of its own; the metrics are those of `trainer=ddp_cpu` run here, whose ranks Lightning starts."""
    sweep_dir = tmp_path / "sweep"
    tasks = ["hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1"]
    sweep = start_sweep([*DDP_JOB, *RANKS, *tasks], sweep_dir, data_dir)
    out = finish(sweep, 240)
    assert sweep.returncode == 0, out[-3000:]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    local = train_cli([*DDP_JOB, *RANKS], tmp_path / "local", data_dir)
    assert local.returncode == 0, local.stderr[-3000:]

    by_slurm = ranks(sweep_dir / "0")
    assert [r["slurm_procid"] for r in by_slurm] == ["0", "1"]
    assert [(r["environment"], r["external"], r["started"], r["world_size"]) for r in by_slurm] == [
        ("SLURMEnvironment", True, 0, 2)
    ] * 2, "SLURM started both ranks; Lightning started no process"
    assert by_slurm[0]["pid"] != by_slurm[1]["pid"]
    assert not (sweep_dir / "0" / "ranks" / "2.json").exists()
    assert [r["started"] for r in ranks(tmp_path / "local")] == [1, 0], "here Lightning starts rank 1"
    assert metrics_of(sweep_dir / "0") == pytest.approx(metrics_of(tmp_path / "local"), rel=1e-5, abs=1e-7)
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done"]


def test_more_slurm_tasks_than_trainer_ranks_are_refused_in_one_line_before_anything_is_submitted(
    tmp_path, data_dir
):
    """Two tasks and a one-device trainer would train the job twice into one dir: the launcher reads each
    job's config and refuses before submitting any (job 1 would fit, job 0 does not)."""
    sweep_dir = tmp_path / "sweep"
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    args = [*TINY_MNIST, "trainer=ddp_cpu", "trainer.devices=1,2", "hydra.launcher.tasks_per_node=2"]
    sweep = start_sweep(args, sweep_dir, data_dir)
    out = finish(sweep, 120)
    assert sweep.returncode == 1
    message = (
        "error: job 0: SLURM starts 2 tasks for this job (hydra.launcher.nodes x tasks_per_node) but "
        "trainer.devices=1 x trainer.num_nodes=1 ranks"
    )
    assert message in out and out.strip().endswith("nothing was submitted"), out[-2000:]
    assert "Traceback" not in out
    assert not (sweep_dir / "slurm_jobs.json").exists() and not (sweep_dir / ".submitit").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout == before


def test_a_search_whose_workers_are_slurm_jobs_returns_at_once_and_ends_with_exactly_n_trials(
    tmp_path, data_dir
):
    """hydra.sweeper.n_workers=2 with wait=false: two worker jobs are submitted and the command returns;
    they share the journal study, and the summary lists the trials (not the workers)."""
    from tests.test_search_workers import counted

    sweep_dir = tmp_path / "search"
    args = [
        *TINY_MNIST,
        "hparams_search=mnist_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_workers=2",
    ]
    submitted = sweep_cmd([*args, "hydra.launcher.wait=false"], sweep_dir, data_dir)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    line = next(s for s in submitted.stdout.splitlines() if s.startswith("Submitted 2 of 2 jobs to SLURM"))
    wait_until_out_of_the_queue(re.findall(r"\d+: (\d+_\d+)", line), 300)
    trials = counted(sweep_dir)
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert {t.user_attrs["slurm_job"] for t in trials} <= {str(n) for n in range(10**6)}
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    shown = summarize_cli(sweep_dir)
    jobs = re.findall(r"^\| (\S+) \| (\w+) \|", shown.stdout, re.MULTILINE)
    assert sorted(int(j) for j, _ in jobs if j != "job") == sorted(t.number for t in trials), shown.stdout
