"""An Optuna search run by workers (`hydra.sweeper.n_workers`): each starts its next trial as soon as its
last ends, they share one journal-file study, and a search whose workers were killed resumes to exactly
`n_trials` finished trials without drawing tried values again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_MNIST, read_summary
from tests.test_parallel import run_sweep, start_sweep

pytestmark = pytest.mark.slow

SEARCH = [*TINY_MNIST, "hparams_search=mnist_optuna_workers", "hydra.sweeper.pruner=null"]


def study_of(sweep_dir: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name="search", storage=storage)


def counted(sweep_dir: Path) -> list:
    from seqlab.sweeps.optuna_search import FINISHED, counted

    return counted(study_of(sweep_dir), FINISHED)


def test_workers_start_their_next_trial_as_soon_as_their_last_ends(tmp_path, data_dir):
    sweep_dir = tmp_path / "search"
    done = run_sweep([*SEARCH, "hydra.sweeper.n_trials=6"], sweep_dir, data_dir, threads="1")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = counted(sweep_dir)
    assert len(trials) == 6 and {t.state.name for t in trials} == {"COMPLETE"}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    by_worker: dict[int, list] = {}
    for trial in sorted(study_of(sweep_dir).trials, key=lambda t: t.datetime_start):
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial)
    assert sorted(by_worker) == [0, 1]
    for worker, runs in by_worker.items():
        for previous, following in zip(runs, runs[1:], strict=False):
            idle = (following.datetime_start - previous.datetime_complete).total_seconds()
            assert idle < 2, (
                f"worker {worker} waited {idle:.1f} s between trials {previous.number} and {following.number}"
            )
    # Every trial past the sixth was given back at once: none ran.
    extra = [t for t in study_of(sweep_dir).trials if t.user_attrs.get("surplus")]
    assert all((t.datetime_complete - t.datetime_start).total_seconds() < 2 for t in extra)
    rows = read_summary(sweep_dir)
    assert sorted(int(r["job"]) for r in rows) == sorted(t.number for t in trials)
    assert {r["status"] for r in rows} == {"done"}


def test_a_search_whose_workers_were_killed_resumes_to_exactly_n_trials_without_redrawing(tmp_path, data_dir):
    sweep_dir = tmp_path / "search"
    args = [*SEARCH, "hydra.sweeper.n_trials=5"]
    search = start_sweep(args, sweep_dir, data_dir, threads="1")
    end = time.monotonic() + 240
    while True:  # two trials done and two running: kill the search and its workers outright
        trials = study_of(sweep_dir).trials if (sweep_dir / "optuna.journal").exists() else []
        running = [t for t in trials if t.state.name == "RUNNING" and "pid" in t.user_attrs]
        if sum(t.state.name == "COMPLETE" for t in trials) >= 2 and len(running) == 2:
            break
        assert time.monotonic() < end and search.poll() is None, "the search never ran two trials at once"
        time.sleep(0.2)
    os.kill(search.pid, signal.SIGKILL)
    for trial in running:
        os.kill(int(trial.user_attrs["pid"]), signal.SIGKILL)
    search.communicate()
    killed = {t.number: t.params for t in running}

    resumed = run_sweep([*args, "resume=true"], sweep_dir, data_dir, threads="1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = counted(sweep_dir)
    assert len(trials) == 5 and {t.state.name for t in trials} == {"COMPLETE"}
    retries = {t.user_attrs["retry_of"]: t.params for t in trials if "retry_of" in t.user_attrs}
    assert retries == killed, "each killed trial's values ran again, once"
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5, "no value drawn twice"
    for number in killed:
        assert (sweep_dir / str(number) / "retried_as").is_file()
    assert sorted(int(r["job"]) for r in read_summary(sweep_dir)) == sorted(t.number for t in trials)
