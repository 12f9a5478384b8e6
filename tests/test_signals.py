"""A signal at any moment of a run: SIGTERM (and SIGKILL) at every point a run can be, then resume=true
ends with the metrics of the run never stopped and a history.csv with each epoch once and whole."""

import signal
from pathlib import Path

import pytest

from seqlab.results import read_history
from tests.helpers import metrics_of, train_cli

pytestmark = pytest.mark.slow

RUN = [
    "experiment=mnist_lstm",
    "data.val_size=40",
    "data.batch_size=16",
    "model.net.dropout=0.3",
    "debug=limit",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "seed=3",
]
POINTS = [
    "sanity",
    "train_batch",
    "before_validation",
    "validation_batch",
    "validation_end",
    "train_epoch_end",
    "checkpoint_write",
    "next_epoch_start",
    "fit_end",
    "final_validation",
    "final_test",
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir) -> Path:
    """One uninterrupted run, the reference for every case."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    done = train_cli(RUN, run_dir, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def epochs(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k != "wall_time_s"} for row in read_history(run_dir / "history.csv")
    ]


# SIGKILL leaves no handler anything to do: the run dies wherever it is and resumes from the last whole
# last.ckpt (atomic writes); three points stand for the rest: mid-epoch, inside a write, the final test.
CASES = [(point, signal.SIGTERM) for point in POINTS] + [
    (point, signal.SIGKILL) for point in ("train_batch", "checkpoint_write", "final_test")
]


@pytest.mark.parametrize(("point", "signum"), CASES, ids=[f"{p}-{s.name}" for p, s in CASES])
def test_a_signal_at_any_point_then_resume_ends_as_the_run_never_stopped(
    point, signum, straight, tmp_path, data_dir, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    hook = ["+callbacks.stop._target_=tests.helpers.SignalAtHook", f"+callbacks.stop.point={point}"]
    stopped = train_cli([*RUN, *hook, f"+callbacks.stop.signum={int(signum)}"], run_dir, data_dir)
    assert (run_dir / "signal_sent").read_text() == point, "the signal was sent"
    if signum == signal.SIGKILL:
        assert stopped.returncode == -9
    else:
        assert stopped.returncode == 1, stopped.stderr[-3000:]
        line = stopped.stderr.strip().splitlines()[-1]
        assert line.startswith("error: stopped by a signal") and "Traceback" not in stopped.stderr, line
    assert not (run_dir / "metrics.json").exists(), "a stopped run is not finished"
    resumed = train_cli([*RUN, *hook, "resume=true"], run_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics_of(run_dir) == pytest.approx(metrics_of(straight), rel=1e-5, abs=1e-6)
    rows, reference = epochs(run_dir), epochs(straight)
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in reference], "each epoch once"
    for row, ref in zip(rows, reference, strict=True):
        if row["train_batches"] < ref["train_batches"]:  # resumed mid-epoch: its train means say so
            row = {k: v for k, v in row.items() if not k.startswith(("train/", "train_batches"))}
            ref = {k: v for k, v in ref.items() if k in row}
        assert row == pytest.approx(ref, rel=1e-5, abs=1e-6, nan_ok=True), f"epoch {row['epoch']}"
