"""One model across two SLURM nodes (`scripts/cluster/slurm_cluster.sh start --nodes 2`: two slurmd, each
in a network namespace of its own with its own address and hostname): DDP over gloo between the nodes,
a requeue mid-epoch and a node that fails mid-run, each ending with the metrics of the run never stopped."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.helpers import REPO, TINY_MNIST, metrics_of, read_summary, train_cli
from tests.test_slurm import SLURM_TEST_MARKS, finish, job_logs, release_when_requeued, start_sweep, wait_for
from tests.test_slurm_sweeps import ranks

CLUSTER = REPO / "scripts" / "cluster" / "slurm_cluster.sh"


def nodes() -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True)
    return sorted(set(out.stdout.split())) if out.returncode == 0 else []


pytestmark = [
    *SLURM_TEST_MARKS,
    pytest.mark.skipif(
        len(nodes()) < 2,
        reason="needs a SLURM of two nodes: scripts/cluster/slurm_cluster.sh start --nodes 2",
    ),
]

TWO_NODES = [
    "hydra.launcher.nodes=2",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "trainer=ddp_cpu",
    "trainer.devices=1",
    "+trainer.num_nodes=2",
]
JOB = [  # deterministic, one thread a rank: a resumed run sums in the order of an uninterrupted one
    *TINY_MNIST,
    "model.net.dropout=0.0",
    "data.batch_size=8",
    "trainer.limit_train_batches=1.0",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "+callbacks.ranks._target_=tests.helpers.RankRecord",
]
WAIT_IN_EPOCH_1 = [
    "+callbacks.wait._target_=tests.helpers.WaitForSignal",
    "+callbacks.wait.epoch=1",
    "+callbacks.wait.batch=3",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> dict:
    """The same job as two local processes that Lightning starts (`trainer=ddp_cpu`, devices=2)."""
    run_dir = tmp_path_factory.mktemp("local") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # as each SLURM task (start_sweep)
        done = train_cli([*JOB, "trainer=ddp_cpu"], run_dir, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return metrics_of(run_dir)


def test_a_two_node_ddp_job_matches_the_same_two_ranks_run_as_local_processes(
    tmp_path, data_dir, uninterrupted
):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep([*JOB, *TWO_NODES], sweep_dir, data_dir)
    out = finish(sweep, 300)
    assert sweep.returncode == 0, out[-3000:] + job_logs(sweep_dir)[-3000:]
    by_rank = ranks(sweep_dir / "0")
    assert [(r["host"], r["slurm_procid"], r["world_size"]) for r in by_rank] == [
        ("n1", "0", 2),
        ("n2", "1", 2),
    ]
    assert {(r["environment"], r["started"]) for r in by_rank} == {("SLURMEnvironment", 0)}
    assert metrics_of(sweep_dir / "0") == pytest.approx(uninterrupted, rel=1e-5, abs=1e-7)
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done"]


def test_a_two_node_job_requeued_mid_epoch_ends_with_the_uninterrupted_runs_metrics(
    tmp_path, data_dir, uninterrupted
):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep([*JOB, *TWO_NODES, *WAIT_IN_EPOCH_1], sweep_dir, data_dir)
    job_id = wait_for(sweep_dir / "0" / "waiting", sweep, 240)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    release_when_requeued(job_id, sweep, 120)
    out = finish(sweep, 300)
    assert sweep.returncode == 0, out[-3000:] + job_logs(sweep_dir)[-3000:]
    log = (sweep_dir / "0" / "train.log").read_text()
    assert "stopped by a signal at epoch 1" in log and "Resuming from" in log
    assert metrics_of(sweep_dir / "0") == pytest.approx(uninterrupted, rel=1e-5, abs=1e-7)


def test_a_node_that_fails_mid_run_gets_its_job_requeued_and_finished_with_equal_metrics(
    tmp_path, data_dir, uninterrupted
):
    """Node n2's slurmd and every process on it are killed (a node failure): SLURM marks n2 down and
    requeues the job; once n2's slurmd is back, the job runs again from its last checkpoint."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep([*JOB, *TWO_NODES, *WAIT_IN_EPOCH_1], sweep_dir, data_dir)
    job_id = wait_for(sweep_dir / "0" / "waiting", sweep, 240)
    try:
        subprocess.run(["bash", str(CLUSTER), "stop-node", "n2"], check=True, capture_output=True)
        end = time.monotonic() + 120
        while "n2" not in down_nodes():
            assert time.monotonic() < end, "SLURM never marked n2 down"
            time.sleep(1)
    finally:
        subprocess.run(["bash", str(CLUSTER), "restart-node", "n2"], check=True, capture_output=True)
    release_when_requeued(job_id, sweep, 180)
    out = finish(sweep, 400)
    assert sweep.returncode == 0, out[-3000:] + job_logs(sweep_dir)[-3000:]
    assert "Resuming from" in (sweep_dir / "0" / "train.log").read_text()
    assert metrics_of(sweep_dir / "0") == pytest.approx(uninterrupted, rel=1e-5, abs=1e-7)


def down_nodes() -> str:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-t", "down,drain,fail", "-o", "%N"], capture_output=True, text=True
    )
    return out.stdout
