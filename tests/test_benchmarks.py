"""The benchmark scripts run end to end on tiny data and print their figures (timings are not judged here)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,args,expected",
    [
        ("bench_mnist.py", ["--batches", "3", "--repeats", "1", "data.val_size=40"], "ratio seqlab/plain"),
        ("bench_ptb.py", ["--batches", "2", "--repeats", "1"], "truncated_bptt_steps=null"),
        (
            "bench_imdb.py",
            ["--batches", "2", "--repeats", "1", "data.val_size=40", "data.min_freq=1"],
            "speed-up",
        ),
    ],
)
def test_benchmark_script_runs(data_dir, script, args, expected):
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout
