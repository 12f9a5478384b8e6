"""Sweep throughput: the same deterministic sweep run one job at a time and `n_jobs` at a time.

A 4-job sweep (by default the course lab `mnist_lstm` on real MNIST, 10,000 images, 2 epochs; one job per
seed: jobs of equal cost) runs twice through `python -m seqlab.train -m`, as a user would run it: with
Hydra's basic launcher (each job on torch's default threads, all cores) and with
`hydra/launcher=parallel hydra.launcher.n_jobs=2` (each job cores // 2 threads). Prints each sweep's
wall time and jobs per hour, their ratio (goal: >= 1.3 on a 2-core machine) and whether every job's
metrics.json is the same in both (wall time aside; `--sequential-threads 1` makes the thread counts
equal, hence the numbers comparable bit for bit).

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_sweep.py [--repeats 3] [--n-jobs 2] [--seeds 0,1,2,3]
    python scripts/bench/bench_sweep.py --experiment adding data.seq_len=100 trainer.max_steps=1000   # synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Figures, add_common_args, header

REPO = Path(__file__).resolve().parents[2]


def run_sweep(args: list[str], env: dict[str, str], sweep_dir: Path) -> float:
    """Seconds from the command's start to its exit (Python start-up included: it is part of a sweep)."""
    cmd = [sys.executable, "-m", "seqlab.train", "-m", *args, f"hydra.sweep.dir={sweep_dir}"]
    cmd += ["print_config=false", "trainer.enable_progress_bar=false"]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, **env}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: the sweep in {sweep_dir} failed:\n{done.stderr[-3000:]}")
    return seconds


def job_metrics(sweep_dir: Path, jobs: int) -> list[dict[str, float]]:
    metrics = [json.loads((sweep_dir / str(j) / "metrics.json").read_text()) for j in range(jobs)]
    return [{k: v for k, v in m.items() if k != "wall_time_s"} for m in metrics]


def largest_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    return max(abs(x[k] - y[k]) for x, y in zip(a, b, strict=True) for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist_lstm")
    parser.add_argument("--n-jobs", type=int, default=2, help="jobs at once in the parallel sweep")
    parser.add_argument("--seeds", default="0,1,2,3", help="one job per seed, e.g. 0,1,2,3")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of sweeps, in alternating order")
    parser.add_argument(
        "--sequential-threads",
        help="OMP_NUM_THREADS of the sequential sweep (default: torch's, all cores); the parallel jobs' "
        "count (cores // n_jobs) makes the metrics comparable bit for bit",
    )
    add_common_args(parser)
    args = parser.parse_args()
    jobs = len(args.seeds.split(","))
    sweep = [
        f"experiment={args.experiment}",
        f"paths.data_dir={args.data_dir}",
        f"seed={args.seeds}",
        *args.overrides,
    ]
    modes = {
        "sequential": (
            sweep,
            {"OMP_NUM_THREADS": args.sequential_threads} if args.sequential_threads else {},
        ),
        "parallel": ([*sweep, "hydra/launcher=parallel", f"hydra.launcher.n_jobs={args.n_jobs}"], {}),
    }
    print(
        header(f"Sweep throughput: {jobs} jobs ({' '.join(sweep)}), one at a time vs {args.n_jobs} at a time")
    )
    # The first command to start reads seqlab, torch and Lightning from disk: not a sweep's cost.
    subprocess.run([sys.executable, "-c", "import lightning, seqlab.pipeline"], check=True)
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            for mode in list(modes) if repeat % 2 == 0 else list(modes)[::-1]:
                shutil.rmtree(Path(out, mode), ignore_errors=True)
                seconds[mode].append(run_sweep(*modes[mode], Path(out, mode)))
                print(f"{mode} sweep {repeat + 1}: {seconds[mode][-1]:.1f} s", flush=True)
        one, many = (job_metrics(Path(out, mode), jobs) for mode in modes)
        threads = [Path(out, mode, "0", "machine.txt").read_text().split(", ")[1] for mode in modes]
    sequential, parallel = (jobs / statistics.median(seconds[mode]) * 3600 for mode in modes)
    figures = Figures("sweep")
    figures.add(f"sequential sweep, {jobs} jobs ({threads[0]} each)", sequential, "jobs/h")
    figures.add(f"parallel sweep, {args.n_jobs} at a time ({threads[1]} each)", parallel, "jobs/h")
    figures.add("parallel / sequential", parallel / sequential, "x", goal=">= 1.3")
    difference = largest_difference(one, many)
    same = "identical" if difference == 0 else f"not identical (largest difference {difference:.3g})"
    figures.write(args.json, sweep=sweep, n_jobs=args.n_jobs, seconds=seconds, largest_difference=difference)
    print(f"\nmedian seconds: {', '.join(f'{m} {statistics.median(s):.1f}' for m, s in seconds.items())}")
    print(f"parallel / sequential: {parallel / sequential:.2f}x; per-job metrics: {same}")


if __name__ == "__main__":
    main()
