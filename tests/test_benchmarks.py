"""The benchmark suite runs end to end on tiny data and collects its figures (timings are not judged here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "bench"
TINY = {
    "bench_cells.py": ["--batch", "2", "--hidden", "8", "--seq-len", "20", "--repeats", "1"],
    "bench_mnist.py": ["--batches", "7", "--repeats", "1", "data.val_size=40", "data.batch_size=16"],
    "bench_ptb.py": ["--batches", "2", "--repeats", "1"],
    "bench_imdb.py": ["--batches", "2", "--repeats", "1", "data.val_size=40", "data.min_freq=1"],
    "bench_scaling.py": [
        "--batch-sizes", "2", "4", "--hidden", "8", "16", "--windows", "1",
        "data.seq_len=5", "model.truncated_bptt_steps=5",
    ],
    "bench_search_workers.py": [
        "--trials", "2", "data.val_size=40", "data.batch_size=16", "data.train_subset=null", "debug=limit",
    ],
    "bench_sweep.py": ["--seeds", "0,1", "data.val_size=40", "data.batch_size=16", "data.train_subset=null", "debug=limit"],
}  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_benchmark_runs_and_the_report_collects_them(data_dir, tmp_path):
    assert sorted(TINY) == sorted(p.name for p in SCRIPTS.glob("bench_*.py")), (
        "a tiny setting for each script"
    )
    for script, args in TINY.items():
        done = run(
            str(SCRIPTS / script),
            "--data-dir",
            str(data_dir),
            "--json",
            str(tmp_path / f"{script[:-3]}.json"),
            *args,
        )
        assert done.returncode == 0, f"{script}: {done.stderr[-3000:]}"
    report = run(str(SCRIPTS / "report_bench.py"), str(tmp_path))
    assert report.returncode == 0, report.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["task"], r["measure"]) for part in results["benchmarks"] for r in part["rows"]}
    for task in ("mnist", "ptb", "imdb"):
        assert {(task, "train throughput"), (task, "start-up to exit, debug=fdr")} <= rows | {
            (task, m.split(" (")[0]) for t, m in rows if t == task
        }
        assert any(t == task and m.startswith("eval throughput") for t, m in rows)
        assert any(t == task and m.endswith("plain loop vs itself (noise control)") for t, m in rows)
    assert ("ptb_scaling", "train, hidden 16, batch 4") in rows
    cells = {m.split(", ")[1] for t, m in rows if t == "cells" and m.startswith("train tokens/s at T=20")}
    assert {"lstm (oneDNN)", "lru", "mingru", "indrnn (loop)"} <= cells
    for measure in ("step", "epoch"):
        assert ("mnist", f"seqlab's cost per {measure} beyond Lightning's, 1 x 8 rnn") in rows
    table = (tmp_path / "results.md").read_text()
    assert "| mnist | train throughput |" in table and "GPU rows not measured" in table
    assert "Noise controls (a plain loop against itself" in table


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_the_cpu_with_dry_run(data_dir, tmp_path):
    """scripts/cluster/gpu_check.sh --dry-run: every step on CPU settings, one JSON + markdown report."""
    out = tmp_path / "gpu_check"
    done = subprocess.run(
        [
            "bash",
            str(SCRIPTS.parent / "cluster" / "gpu_check.sh"),
            "--dry-run",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PY": sys.executable},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {s["step"]: s["rc"] for s in report["steps"]}
    assert steps == dict.fromkeys(
        ["bench_mnist", "bench_ptb", "bench_imdb", "startup_fdr", "bf16_ptb", "compile_mnist"], 0
    )
    assert report["benchmarks"] and "| compile_mnist | 0 |" in (out / "gpu_check.md").read_text()
