"""Sweeps through a real SLURM (`scripts/cluster/slurm_cluster.sh start`): preemption, time limits, config errors.

Each job is a SLURM job started by submitit; the tests skip, saying why, when no cluster answers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, metrics_of, read_summary, sweep_command

# A cluster of several nodes (`slurm_cluster.sh start --nodes 2`) lives in network namespaces; its
# commands run there through the wrappers its start script writes.
SLURM_BIN = Path(os.environ.get("SEQLAB_SLURM_DIR", "/tmp/seqlab-slurm")) / "bin"
if (SLURM_BIN / "scontrol").exists() and str(SLURM_BIN) not in os.environ["PATH"].split(os.pathsep):
    os.environ["PATH"] = f"{SLURM_BIN}{os.pathsep}{os.environ['PATH']}"


def slurm_answers() -> str:
    """'' when a SLURM controller answers here, else why not."""
    if shutil.which("scontrol") is None:
        return "no SLURM here (apt-get install slurm-wlm munge, then scripts/cluster/slurm_cluster.sh start)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        return "no SLURM controller answers: scripts/cluster/slurm_cluster.sh start"
    return ""


SLURM_TEST_MARKS = [  # also test_slurm_sweeps.py's
    pytest.mark.slow,
    pytest.mark.skipif(bool(slurm_answers()), reason=slurm_answers() or "slurm"),
    pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
        reason="needs pip install -e .[cluster]",
    ),
]
pytestmark = SLURM_TEST_MARKS

JOB = [  # one CPU per job, one thread: a resumed run sums in the order of an uninterrupted one
    "experiment=mnist_lstm",
    "data.val_size=40",
    "data.batch_size=16",
    "debug=limit",
    "trainer.limit_train_batches=1.0",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "seed=3",
]
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
]


def start_sweep(args: list[str], sweep_dir: Path, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        sweep_command([*LAUNCHER, *args], sweep_dir, data_dir),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(sweep: subprocess.Popen, seconds: float) -> str:
    """The sweep's output once it ends; a sweep still running then is killed and its jobs cancelled."""
    try:
        out, _ = sweep.communicate(timeout=seconds)
        return out
    except subprocess.TimeoutExpired:
        sweep.kill()
        subprocess.run(["scancel", "--user", str(os.getuid())], check=False)
        out, _ = sweep.communicate()
        pytest.fail(f"the sweep did not end within {seconds:.0f} s:\n{out[-3000:]}")


def wait_for(path: Path, sweep: subprocess.Popen, seconds: float) -> str:
    end = time.monotonic() + seconds
    while not path.exists():
        if sweep.poll() is not None or time.monotonic() > end:
            finish(sweep, 1)
            pytest.fail(f"{path} never appeared")
        time.sleep(0.2)
    time.sleep(0.2)
    return path.read_text()


def release_when_requeued(job_id: str, sweep: subprocess.Popen, seconds: float) -> None:
    """A requeued job waits ~2 minutes before it may start again (and, after a node failure, for the node
    to come back); start it as soon as SLURM may."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and sweep.poll() is None:
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        if state.stdout.strip() == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
            return
        time.sleep(0.5)
    finish(sweep, 1)
    pytest.fail(f"job {job_id} was never requeued")


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((sweep_dir / ".submitit").rglob("*_log.*")))


def test_a_job_preempted_mid_epoch_is_requeued_into_its_run_dir_and_ends_as_if_never_stopped(
    tmp_path, data_dir
):
    """`scontrol requeue` (SIGTERM, then back in the queue) in epoch 1 of job 0; job 1 runs straight."""
    sweep_dir = tmp_path / "sweep"
    wait = ["+callbacks.wait._target_=tests.helpers.WaitForSignal", "+callbacks.wait.epoch=1"]
    sweep = start_sweep([*JOB, *wait, "+callbacks.wait.batch=3,-1"], sweep_dir, data_dir)
    job_id = wait_for(sweep_dir / "0" / "waiting", sweep, 180)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    release_when_requeued(job_id, sweep, 60)
    out = finish(sweep, 180)
    assert sweep.returncode == 0, out[-3000:]
    log = (sweep_dir / "0" / "train.log").read_text()
    assert "stopped by a signal at epoch 1" in log
    assert f"Resuming from {sweep_dir / '0' / 'checkpoints' / 'last.ckpt'}" in log
    picked = {k: v for k, v in metrics_of(sweep_dir / "1").items() if k.startswith(("val/", "test/"))}
    assert {k: metrics_of(sweep_dir / "0")[k] for k in picked} == pytest.approx(picked, rel=1e-5, abs=1e-6)
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done", "done"]


def test_a_job_warned_of_its_time_limit_checkpoints_is_requeued_and_finishes(tmp_path, data_dir):
    """A 2-minute limit with SIGUSR2 60 s ahead (submitit's signal; SLURM sends it up to a minute early):
    the job waits in epoch 1 until the warning comes, checkpoints, is requeued by submitit and finishes
    on its next attempt."""
    sweep_dir = tmp_path / "sweep"
    args = [
        *JOB,
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "+callbacks.wait._target_=tests.helpers.WaitForSignal",
        "+callbacks.wait.epoch=1",
        "+callbacks.wait.batch=2",
    ]
    sweep = start_sweep(args, sweep_dir, data_dir)
    job_id = wait_for(sweep_dir / "0" / "waiting", sweep, 180)
    release_when_requeued(job_id, sweep, 150)
    out = finish(sweep, 180)
    assert sweep.returncode == 0, out[-3000:] + job_logs(sweep_dir)[-3000:]
    logs = job_logs(sweep_dir)
    assert "this job is timed-out" in logs and "Requeued job" in logs
    assert logs.count("Starting with JobEnvironment") == 2, "the second attempt finished"
    assert "stopped by a signal at epoch 1" in (sweep_dir / "0" / "train.log").read_text()
    assert (sweep_dir / "0" / "metrics.json").exists()


def test_a_job_failing_on_its_config_runs_once_and_the_summary_names_the_error(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep([*JOB, "model.net.cell=lstmm"], sweep_dir, data_dir)
    out = finish(sweep, 180)
    assert sweep.returncode != 0
    [row] = read_summary(sweep_dir)
    assert row["status"] == "failed" and "lstmm" in row["error"], out[-2000:]
    assert job_logs(sweep_dir).count("Starting with JobEnvironment") == 1, "never requeued"
