"""Never lose a run to another process: unique run names, and a run dir claimed by one live process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO, metrics_of, train_cli

TINY = ["experiment=mnist_rnn", "debug=limit", "data.val_size=40", "data.batch_size=16"]


def start(args: list[str], data_dir: Path, log_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    flags = [a for a in args if a.startswith("-")]  # e.g. -m: before the overrides
    cmd = [
        sys.executable,
        "-m",
        "seqlab.train",
        *flags,
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={log_dir}",
    ]
    cmd += ["print_config=false", "trainer.enable_progress_bar=false", *(a for a in args if a not in flags)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_run_dirs(tmp_path, data_dir):
    runs = [start([*TINY, f"model.net.hidden_dim={h}"], data_dir, tmp_path) for h in (8, 16)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    dirs = sorted((tmp_path / "debug" / "mnist_rnn").iterdir())  # debug=limit's run dirs
    assert len(dirs) == 2, f"both runs wrote into {dirs}"
    hidden = sorted(OmegaConf.load(d / ".hydra" / "config.yaml").model.net.hidden_dim for d in dirs)
    assert hidden == [8, 16]
    for d in dirs:
        assert (d / "metrics.json").is_file() and sorted(p.name for p in (d / "checkpoints").iterdir())[
            -1
        ] == "last.ckpt"
        assert not list((d / "checkpoints").glob("*-v1.ckpt")), "another model's checkpoints beside these"
        assert not (d / ".seqlab_claim.json").exists(), "the claim is released at the end"


@pytest.mark.slow
def test_a_claimed_run_dir_refuses_a_second_live_process_and_a_dead_owner_is_taken_over_by_resume(
    tmp_path, data_dir
):
    run_dir = tmp_path / "run"
    pause = [
        "+callbacks.pause._target_=tests.helpers.PauseAt",
        "+callbacks.pause.batch=1",
        "+callbacks.pause.seconds=60",
    ]
    first = start([*TINY, f"hydra.run.dir={run_dir}", *pause], data_dir, tmp_path)
    claim = run_dir / ".seqlab_claim.json"
    deadline = time.time() + 120
    config = run_dir / ".hydra" / "config.yaml"  # read below: wait until it is written whole
    while (
        not (run_dir / "train.log").exists()
        or not claim.exists()
        or not config.is_file()
        or not config.stat().st_size
    ):
        assert time.time() < deadline and first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.2)
    config_before = (run_dir / ".hydra" / "config.yaml").read_text()
    second = train_cli([*TINY, "model.net.hidden_dim=64"], run_dir, data_dir)
    assert second.returncode != 0
    message = second.stderr.strip().splitlines()
    assert len(message) == 1 and f"{run_dir} is in use by pid {first.pid}" in message[0], second.stderr[
        -2000:
    ]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config_before, (
        "the second run wrote into the dir"
    )

    first.send_signal(signal.SIGKILL)  # the owner dies holding the claim
    first.wait(30)
    third = train_cli(TINY, run_dir, data_dir)
    assert third.returncode != 0 and "is gone: resume=true continues that run" in third.stderr
    resumed = train_cli([*TINY, "resume=true"], run_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the claim of pid" in resumed.stderr and metrics_of(run_dir)["test/acc"] >= 0


@pytest.mark.slow
def test_a_named_sweep_started_twice_is_refused_while_the_first_runs(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    pause = [
        "+callbacks.pause._target_=tests.helpers.PauseAt",
        "+callbacks.pause.batch=1",
        "+callbacks.pause.seconds=60",
    ]
    first = start(
        ["-m", *TINY, "model.net.hidden_dim=8,16", f"hydra.sweep.dir={sweep_dir}", *pause], data_dir, tmp_path
    )
    deadline = time.time() + 120
    while not (sweep_dir / "0" / "train.log").exists():
        assert time.time() < deadline and first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.2)
    second = start(
        ["-m", *TINY, "model.net.hidden_dim=32", f"hydra.sweep.dir={sweep_dir}"], data_dir, tmp_path
    )
    _, err = second.communicate(timeout=120)
    first.kill()
    first.wait(30)
    assert second.returncode != 0 and f"{sweep_dir} is in use by pid {first.pid}" in err, err[-2000:]
    assert not (sweep_dir / "1").exists(), "the second sweep wrote a job dir"


def test_a_job_dir_claimed_by_a_live_process_reads_running_and_once_it_is_gone_resumable(tmp_path):
    from seqlab.results import read_run
    from seqlab.rundir.claims import CLAIM_FILE, process_start

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("optimized_metric: val/acc\noptimized_mode: max\n")
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    worker = subprocess.Popen(["sleep", "60"])
    try:
        owner = {"host": socket.gethostname(), "pid": worker.pid, "start": process_start(worker.pid)}
        (job / CLAIM_FILE).write_text(json.dumps(owner))
        assert read_run(job)["status"] == "running"
    finally:
        worker.kill()
        worker.wait()
    assert read_run(job)["status"] == "interrupted (resumable)"


@pytest.mark.slow
def test_a_claim_held_on_another_host_is_named_and_never_taken_over(tmp_path, data_dir):
    """A process on another node (a shared file system) cannot be checked from here: even resume=true
    refuses, naming the owner and the claim file to delete once that process is gone."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    owner = {"pid": os.getpid(), "host": f"not-{socket.gethostname()}", "since": "2026-11-30T08:00:00"}
    (run_dir / ".seqlab_claim.json").write_text(json.dumps(owner))
    for extra in ([], ["resume=true"]):
        result = train_cli(["experiment=mnist_rnn", "debug=limit", *extra], run_dir, data_dir)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {run_dir} is claimed by pid {os.getpid()} on {owner['host']} (since 2026-11-30T08:00:00), "
            f"which cannot be checked from here: if that process is gone, delete {run_dir / '.seqlab_claim.json'} "
            "and run again"
        )
    assert json.loads((run_dir / ".seqlab_claim.json").read_text()) == owner  # the claim is left alone
