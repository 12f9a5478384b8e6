"""scripts/results/course_tables.py turns real sweep dirs into results tables, the course's number beside ours."""

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY_MNIST, sweep_cli

COURSE_CELLS = {"rnn": "10.0", "lstm": "87.5"}  # the course's column of mnist_cells, as the script quotes it

pytestmark = pytest.mark.slow  # each test runs a real sweep


def tables(sweeps: Path, out: Path, *names: str) -> subprocess.CompletedProcess:
    args = ["scripts/results/course_tables.py", "--sweeps", str(sweeps), "--out", str(out), *names]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)


def test_a_table_has_a_row_per_job_and_a_one_job_sweep_names_its_fixed_value(tmp_path, data_dir):
    sweeps = tmp_path / "sweeps"
    # Named as the course tables they stand in for: two cells (a swept key), one fixed width (not swept).
    swept = sweep_cli([*TINY_MNIST, "model.net.cell=rnn,lstm"], sweeps / "mnist_cells", data_dir)
    assert swept.returncode == 0, swept.stderr[-3000:]
    fixed = sweep_cli([*TINY_MNIST, "model.net.hidden_dim=150"], sweeps / "imdb_compound", data_dir)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    for job in ("0", "1"):  # what each run wrote of its machine, replaced by stand-ins for two nodes
        recorded = sweeps / "mnist_cells" / job / "machine.txt"
        assert " threads, " in recorded.read_text() and ", torch " in recorded.read_text()
        recorded.write_text(f"Node {job} CPU, 64 threads, torch 9.9\n")
    out = tmp_path / "results"
    done = tables(sweeps, out)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = (out / "mnist_cells.md").read_text()
    assert "| rnn | 10.0 |" in cells and "| lstm | 87.5 |" in cells and "for 2 jobs." in cells
    # The machines are those the runs recorded, so a table made elsewhere still names them.
    assert "Machine: Node 0 CPU, 64 threads, torch 9.9; Node 1 CPU, 64 threads, torch 9.9. Finished" in cells
    compound = (out / "imdb_compound.md").read_text()
    assert "| 150 | 87.5 |" in compound and "for 1 job." in compound
    assert (out / "mnist_cells.png").stat().st_size > 0 and (out / "imdb_compound.png").stat().st_size > 0
    assert "imdb_layers: no sweep" in done.stdout  # a sweep not run is skipped, and said so


def test_a_sweep_over_seeds_shows_mean_and_spread_and_each_seed(tmp_path, data_dir):
    sweeps = tmp_path / "sweeps"
    swept = sweep_cli([*TINY_MNIST, "model.net.cell=rnn,lstm", "seed=0,1"], sweeps / "mnist_cells", data_dir)
    assert swept.returncode == 0, swept.stderr[-3000:]
    out = tmp_path / "results"
    done = tables(sweeps, out, "mnist_cells")
    assert done.returncode == 0, done.stderr[-3000:]
    table, seeds = (out / "mnist_cells.md").read_text().split("Per seed:")
    means = [line for line in table.splitlines() if line.startswith(("| rnn |", "| lstm |"))]
    assert len(means) == 2 and all(line.count(" ± ") == 2 and "(n=2)" in line for line in means)
    runs = [line for line in seeds.splitlines() if line.startswith(("| rnn |", "| lstm |"))]
    assert sorted(line.split(" | ")[:2] for line in runs) == [
        ["| lstm", "0"],
        ["| lstm", "1"],
        ["| rnn", "0"],
        ["| rnn", "1"],
    ]
    # Each cell is the sweep's own numbers: every job's metrics.json, and their mean ± sample std over seeds.
    jobs = {}
    for job in (sweeps / "mnist_cells").glob("[0-9]*"):
        overrides = dict(
            o.split("=", 1) for o in (job / ".hydra" / "overrides.yaml").read_text().split("- ")[1:]
        )
        metrics = json.loads((job / "metrics.json").read_text())
        jobs[(overrides["model.net.cell"].strip(), overrides["seed"].strip())] = metrics
    for cell in ("rnn", "lstm"):
        test, val = ([jobs[(cell, seed)][m] * 100 for seed in "01"] for m in ("test/acc", "val/acc"))
        expected = (
            f"| {cell} | {COURSE_CELLS[cell]} | {statistics.fmean(test):.2f} ± {statistics.stdev(test):.2f} (n=2) | "
            f"{statistics.fmean(val):.2f} ± {statistics.stdev(val):.2f} |"
        )
        assert any(line.startswith(expected) for line in means), (expected, means)
        for seed in "01":
            run = jobs[(cell, seed)]
            row = f"| {cell} | {seed} | {run['test/acc'] * 100:.2f} | {run['val/acc'] * 100:.2f} |"
            assert any(line.startswith(row) for line in runs), (row, runs)


def test_a_failed_job_draws_no_bar_and_a_sweep_without_a_finished_job_gives_no_date(
    tmp_path, data_dir, monkeypatch
):
    sweeps, out = tmp_path / "sweeps", tmp_path / "results"
    failed = sweep_cli([*TINY_MNIST, "model.net.cell=lstmm"], sweeps / "mnist_cells", data_dir)
    assert failed.returncode == 1
    done = tables(sweeps, out, "mnist_cells")
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "mnist_cells.md").read_text()
    assert "No job finished;" in table and "1970" not in table
    assert "| lstmm | - | - | - | - | failed |" in table

    import matplotlib.figure

    sys.path.insert(0, str(REPO / "scripts" / "results"))
    import course_tables

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *a, **k: drawn.append(figure))
    course_tables.table("mnist_cells", sweeps / "mnist_cells", tmp_path)  # the chart the table run draws
    [axes] = drawn[0].axes
    heights = [bar.get_height() for bar in axes.patches]  # the course's bar, then seqlab's
    assert len(heights) == 2 and all(math.isnan(h) for h in heights), "a failed job was drawn as a bar"
    assert [text.get_text() for text in axes.texts] == ["failed"]
