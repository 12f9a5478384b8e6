"""Runs as data: `seqlab.runs`, `seqlab.history` and `seqlab-runs` over a run dir, a sweep and a tree."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from omegaconf import OmegaConf

import seqlab
from seqlab.cli import runs_main
from seqlab.rundir.records import record_failure
from tests.helpers import REPO, metrics_of, train_cli


def fake_run(run_dir: Path, cell: str, seed: int, metrics: dict | None = None, epochs: int = 2) -> Path:
    """A run dir as seqlab leaves one: its composed config, overrides, history and (when done) metrics."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "job_name": "${hydra:job.name}",
        "model": {"net": {"cell": cell, "hidden_dim": 8}},
    }
    OmegaConf.save(config | {"paths": {"output_dir": str(run_dir)}}, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save([f"model.net.cell={cell}", f"seed={seed}"], run_dir / ".hydra" / "overrides.yaml")
    rows = [f"{e},{10 * (e + 1)},10,{1.0 / (e + 1)},{0.5 + e / 10}" for e in range(epochs)]
    (run_dir / "history.csv").write_text(
        "epoch,step,train_batches,train/loss,val/acc\n" + "\n".join(rows) + "\n"
    )
    (run_dir / "machine.txt").write_text("a test machine\n")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    fake_run(tmp_path / "train" / "r1", "lstm", 0, {"test/acc": 0.9, "wall_time_s": 12.0})
    sweep = tmp_path / "sweeps" / "cells"
    for job, cell in enumerate(["rnn", "gru"]):
        fake_run(sweep / str(job), cell, 1, {"test/acc": 0.5 + job / 4, "wall_time_s": 5.0})
    try:
        raise ValueError("model.net.hidden_dim=-1 must be >= 1")
    except ValueError as err:
        record_failure(fake_run(sweep / "10", "own_rnn", 1, epochs=0), err)
    (fake_run(sweep / "2", "indrnn", 1) / "retried_as").write_text("10")  # a search's retried trial
    return tmp_path


def test_runs_reads_a_tree_a_sweep_and_one_run_into_one_frame(tree):
    frame = seqlab.runs(tree)
    assert list(frame["run"]) == ["sweeps/cells/0", "sweeps/cells/1", "sweeps/cells/10", "train/r1"]
    assert list(frame["status"]) == ["done", "done", "failed", "done"]
    assert list(frame["model.net.cell"]) == ["rnn", "gru", "own_rnn", "lstm"]
    assert frame["test/acc"].tolist()[:2] == [0.5, 0.75] and math.isnan(frame["test/acc"][2])
    assert frame["best_epoch"].tolist()[0] == 1 or frame["best_epoch"].isna().all()
    assert "hidden_dim=-1 must be >= 1" in frame["error"][2]
    assert frame["machine"][3] == "a test machine" and frame["job_name"][3] == "${hydra:job.name}"
    assert not any(c.startswith(("paths.", "hydra.")) for c in frame.columns)
    assert len(seqlab.runs(tree / "sweeps" / "cells")) == 3
    [one] = seqlab.runs(tree / "train" / "r1").to_dict("records")
    assert one["run"] == "r1" and one["test/acc"] == 0.9 and one["seed"] == 0


def test_history_joins_every_runs_epochs(tree):
    frame = seqlab.history(tree / "sweeps" / "cells")
    assert list(frame["run"]) == ["0", "0", "1", "1", "10"][: len(frame)] and len(frame) == 4
    assert frame["epoch"].tolist() == [0, 1, 0, 1] and frame["val/acc"].tolist() == [0.5, 0.6, 0.5, 0.6]


@pytest.mark.slow  # two real runs in processes of their own: ~12 s
def test_a_real_run_reads_back_with_its_config_and_metrics(data_dir, tmp_path):
    run = train_cli(
        ["experiment=mnist_rnn", "data.val_size=40", "debug=limit"], tmp_path / "runs" / "one", data_dir
    )
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = metrics_of(tmp_path / "runs" / "one")
    [row] = seqlab.runs(tmp_path / "runs").to_dict("records")
    assert row["status"] == "done" and row["test/acc"] == pytest.approx(metrics["test/acc"])
    assert row["model.net.cell"] == "rnn" and row["epochs"] == 2
    assert isinstance(seqlab.history(tmp_path / "runs"), pd.DataFrame)


def test_seqlab_runs_prints_what_differs_and_writes_every_column(tree, capsys, tmp_path):
    runs_main([str(tree / "sweeps" / "cells"), "--csv", str(tmp_path / "all.csv")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "status", "model.net.cell", "test/acc", "wall_time_s"]
    assert lines[1].split()[:3] == ["0", "done", "rnn"] and len(lines) == 4
    assert "model.net.hidden_dim" in pd.read_csv(tmp_path / "all.csv").columns
    with pytest.raises(SystemExit):
        runs_main([str(tmp_path / "nothing")])
    assert "no such directory; give a run dir" in capsys.readouterr().err


@pytest.mark.slow
def test_the_notebook_runs_under_a_real_jupyter_kernel(tmp_path):
    """examples/notebook.ipynb, executed by nbclient in a fresh kernel, on MNIST-shaped data of its own."""
    import nbclient
    import nbformat

    from tests.conftest import make_mnist

    data = make_mnist(tmp_path / "data", n_train=1400, n_test=100)
    notebook = nbformat.read(REPO / "examples" / "notebook.ipynb", as_version=4)
    env = {**os.environ, "SEQLAB_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with mock.patch.dict(os.environ, env):
        client.execute()
    runs = seqlab.runs(tmp_path / "outputs" / "notebook")
    assert sorted(runs["run"]) == ["cells/0", "cells/1", "cells/2", "hidden/32", "hidden/64", "single"]
    assert (runs["status"] == "done").all()
    assert any(o.get("output_type") == "display_data" for o in notebook.cells[-1].outputs)  # the figure


def test_a_run_with_damaged_config_records_is_named_and_the_others_still_read(tree):
    (tree / "sweeps" / "cells" / "1" / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    frame = seqlab.runs(tree / "sweeps" / "cells")
    damaged = frame[frame["run"] == "1"].iloc[0]
    assert damaged["status"] == "failed" and "unreadable config records" in damaged["error"]
    assert list(frame[frame["run"] != "1"]["status"]) == ["done", "failed"]
