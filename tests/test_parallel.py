"""`hydra/launcher=parallel`: a sweep's jobs several at a time on one machine, each with its share of the
cores, with the results, summary and failed-jobs report of the sequential sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY_MNIST, metrics_of, read_summary, sweep_command

SWEEP = [*TINY_MNIST, "model.net.cell=rnn,gru,lstmm"]  # two jobs that train, one that fails on its config


def cpus(n: int) -> set[int]:
    """The first n CPUs this process may use: the sweeps below see exactly these cores."""
    return set(sorted(os.sched_getaffinity(0))[:n])


def start_sweep(
    args: list[str], sweep_dir: Path, data_dir: Path, on: set[int] | None = None, threads: str | None = None
) -> subprocess.Popen:
    cmd = sweep_command(args, sweep_dir, data_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)} | ({"OMP_NUM_THREADS": threads} if threads else {})
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, on)) if on else None,
    )


def run_sweep(*args, **kwargs) -> subprocess.CompletedProcess:
    sweep = start_sweep(*args, **kwargs)
    try:
        out, err = sweep.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        sweep.kill()
        out, err = sweep.communicate()
        pytest.fail(f"the sweep did not end within 300 s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(sweep.args, sweep.returncode, out, err)


def parallel(n_jobs: int) -> list[str]:
    return ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={n_jobs}"]


@pytest.mark.slow
def test_a_parallel_sweep_gives_the_sequential_sweeps_metrics_summary_and_failure_report(tmp_path, data_dir):
    """Sequential at one thread, parallel with 2 jobs on 2 cores (one thread each): the same numbers."""
    on = cpus(2)
    one = run_sweep(SWEEP, tmp_path / "one", data_dir, threads="1")
    two = run_sweep([*SWEEP, *parallel(len(on))], tmp_path / "two", data_dir, on=on)
    report = "job 2 (model.net.cell=lstmm): ConfigError: model.net.cell='lstmm' is not a registered cell"
    for result in (one, two):
        assert result.returncode == 1, result.stderr[-3000:]
        assert "error: 1 of 3 jobs failed; see" in result.stderr and report in result.stderr
    rows = read_summary(tmp_path / "two")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "done"), ("1", "done"), ("2", "failed")]
    assert "2 of 3 jobs done; 1 failed or incomplete" in (tmp_path / "two" / "summary.md").read_text()
    assert json.loads((tmp_path / "two" / "2" / "error.json").read_text())["type"] == "ConfigError"
    for job in ("0", "1"):
        assert metrics_of(tmp_path / "two" / job) == metrics_of(tmp_path / "one" / job)
        assert ", 1 threads," in (tmp_path / "two" / job / "machine.txt").read_text()
        assert "Metrics written to" in (tmp_path / "two" / job / "console.log").read_text()
    if len(on) == 2:  # job 1 started before job 0 ended: they ran at once
        started = (tmp_path / "two" / "1" / ".hydra" / "config.yaml").stat().st_mtime
        assert started < (tmp_path / "two" / "0" / "metrics.json").stat().st_mtime
    assert "Launching 3 jobs, 2 at a time, 1 torch threads each" in two.stdout + two.stderr


@pytest.mark.slow
def test_more_jobs_at_once_than_cores_warns_in_one_line_and_still_runs(tmp_path, data_dir):
    result = run_sweep(
        [*TINY_MNIST, "model.net.hidden_dim=8,16", *parallel(2)], tmp_path / "s", data_dir, on=cpus(1)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warning = (
        "warning: hydra.launcher.n_jobs=2 runs 2 jobs at once on 1 cores: they share them (1 thread each)"
    )
    assert result.stderr.count(warning) == 1
    assert [r["status"] for r in read_summary(tmp_path / "s")] == ["done", "done"]


@pytest.mark.slow
def test_a_job_whose_process_is_killed_fails_alone(tmp_path, data_dir):
    """SIGKILL in job 0's epoch 1 (as the kernel's out-of-memory killer would): job 1 finishes, the sweep
    reports job 0, whose epoch-0 checkpoint leaves it resumable."""
    kill = [
        "+callbacks.kill._target_=tests.helpers.KillAt",
        "+callbacks.kill.epoch=1,99",
        "+callbacks.kill.batch=1",
    ]
    result = run_sweep([*TINY_MNIST, *kill, *parallel(2)], tmp_path / "s", data_dir, on=cpus(2))
    assert result.returncode == 1
    assert (
        "job 0 (+callbacks.kill.epoch=1): JobProcessEnded: its process was killed by SIGKILL" in result.stderr
    )
    rows = read_summary(tmp_path / "s")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "interrupted (resumable)"), ("1", "done")]


@pytest.mark.slow
def test_a_bad_n_jobs_ends_the_sweep_in_one_line(tmp_path, data_dir):
    result = run_sweep([*TINY_MNIST, "model.net.hidden_dim=8,16", *parallel(0)], tmp_path / "s", data_dir)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: hydra.launcher.n_jobs=0: give the number of jobs to run at once")
    assert "Traceback" not in result.stderr and not (tmp_path / "s" / "0").exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_running_job_and_resume_finishes_the_sweep(tmp_path, data_dir):
    """SIGINT to the sweep's process while jobs 0 and 1 run (job 2 waits for a slot): both checkpoint
    mid-epoch, job 2 never starts, the sweep ends in one line; resume=true then finishes all three."""
    sweep_dir = tmp_path / "s"
    wait = ["+callbacks.wait._target_=tests.helpers.WaitForSignal", "+callbacks.wait.batch=1"]
    args = [*TINY_MNIST, "model.net.hidden_dim=8,16,32", *parallel(2), *wait]
    sweep = start_sweep([*args, "+callbacks.wait.epoch=0"], sweep_dir, data_dir, on=cpus(2))
    end = time.monotonic() + 120
    while not all((sweep_dir / job / "waiting").exists() for job in ("0", "1")):
        if sweep.poll() is not None or time.monotonic() > end:
            sweep.kill()
            pytest.fail(f"jobs 0 and 1 never reached their batch 1:\n{sweep.communicate()[1][-3000:]}")
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 1
    assert "error: the sweep was stopped by SIGINT (jobs 0, 1 stopped; 1 not started)" in err, err[-3000:]
    statuses = [(r["job"], r["status"]) for r in read_summary(sweep_dir)]
    assert statuses == [("0", "interrupted (resumable)"), ("1", "interrupted (resumable)")]

    resumed = run_sweep([*args, "+callbacks.wait.epoch=99", "resume=true"], sweep_dir, data_dir, on=cpus(2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done", "done", "done"]
    for job in ("0", "1"):
        assert "Resuming from" in (sweep_dir / job / "train.log").read_text()


@pytest.mark.slow
def test_a_search_is_not_run_by_the_parallel_launcher(tmp_path, data_dir):
    result = run_sweep(["hparams_search=mnist_optuna", *TINY_MNIST, *parallel(2)], tmp_path / "s", data_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: hydra/launcher=parallel runs a sweep's jobs side by side, but " in result.stderr


def test_n_jobs_null_runs_one_job_a_core_and_splits_the_cores_among_the_jobs_at_once():
    from seqlab.resources import plan

    assert plan(None, total=10, cores=4) == (4, 1)  # null: one job a core
    assert plan(None, total=2, cores=8) == (2, 4)  # fewer jobs than cores: the cores shared out
    assert plan(3, total=10, cores=8) == (3, 2)


def test_a_jobs_data_loader_workers_are_capped_at_its_share_of_the_cores(monkeypatch, capsys):
    import torch
    from omegaconf import OmegaConf

    from seqlab.sweeps.parallel_launcher import share_cores

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    config = OmegaConf.create({"data": {"num_workers": 8}})
    OmegaConf.set_struct(config, True)
    share_cores(config, threads=2)
    assert config.data.num_workers == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    assert "data.num_workers=8 lowered to 2" in capsys.readouterr().err
    config = OmegaConf.create({"data": {"num_workers": 1}})
    share_cores(config, threads=2)
    assert config.data.num_workers == 1  # within its share: left alone


def test_a_job_process_ends_with_its_sweep_even_when_the_sweep_is_killed_outright(tmp_path):
    """PR_SET_PDEATHSIG: a parent killed by SIGKILL (no handler runs) still takes its job down by SIGTERM."""
    code = (
        "import os, signal, sys, time\n"
        "from seqlab.sweeps.parallel_launcher import end_with_parent\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    end_with_parent()\n"
        "    signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], 'w').write('SIGTERM'), os._exit(0)))\n"
        "    open(sys.argv[1] + '.ready', 'w').close()\n"
        "    time.sleep(60)\n"
        "    os._exit(1)\n"
        "time.sleep(60)\n"
    )
    marker = tmp_path / "child"
    parent = subprocess.Popen([sys.executable, "-c", code, str(marker)])
    deadline = time.monotonic() + 60
    while not (tmp_path / "child.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "SIGTERM"


def test_gpus_are_shared_out_in_groups_and_too_many_jobs_at_once_are_refused():
    from seqlab.resources import gpu_groups

    assert gpu_groups(None, ["3", "5", "6", "7"], per_job=1) == [["3"], ["5"], ["6"], ["7"]]
    assert gpu_groups(2, ["0", "1", "2", "3", "4"], per_job=2) == [["0", "1"], ["2", "3"]]
    with pytest.raises(SystemExit, match=r"n_jobs=3 jobs at once, each with its own 1 GPU\(s\), but 2 GPUs"):
        gpu_groups(3, ["0", "1"], per_job=1)
    with pytest.raises(SystemExit, match="each job asks for 4 GPUs"):
        gpu_groups(None, ["0", "1"], per_job=4)


@pytest.mark.slow
def test_each_job_of_a_parallel_sweep_gets_a_gpu_of_its_own(tmp_path, data_dir, monkeypatch):
    """Two stand-in GPUs (CUDA_VISIBLE_DEVICES=3,5 on a CPU machine: the jobs train on the CPU): four
    jobs run two at a time, the two at once never on the same GPU; a third job at once is refused."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    record = ["+callbacks.gpus._target_=tests.helpers.GpuRecord", "seed=0,1,2,3"]
    done = run_sweep([*TINY_MNIST, *record, "hydra/launcher=parallel"], tmp_path / "s", data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 jobs, 2 at a time, 1 torch threads each, each on its own GPU(s) of 3,5" in done.stdout
    jobs = [json.loads((tmp_path / "s" / str(j) / "gpus.json").read_text()) for j in range(4)]
    assert {job["gpus"] for job in jobs} <= {"3", "5"}
    for a in jobs:
        for b in jobs:
            overlap = a is not b and a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and a["gpus"] == b["gpus"]), f"two jobs at once on GPU {a['gpus']}"
    refused = run_sweep([*TINY_MNIST, "seed=0,1,2", *parallel(3)], tmp_path / "r", data_dir)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        "error: hydra.launcher.n_jobs=3 jobs at once, each with its own 1 GPU(s), but 2 GPUs"
        in refused.stderr
    )
