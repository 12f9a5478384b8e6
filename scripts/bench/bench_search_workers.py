"""Search throughput: an Optuna search of trials of mixed length, one trial at a time against `n_workers`
workers without batch barriers.

`hparams_search=mnist_optuna_workers` (trainer.max_epochs searched among 2, 5, 10 beside the model's
settings) runs twice through `python -m seqlab.train -m`, as a user would: with `hydra.sweeper.n_workers=1`
and the basic launcher (today's one-trial-at-a-time search, on torch's default threads, all cores), and
with the config's 2 workers, each a process of cores // 2 threads (`hydra/launcher=parallel`). Prints each
search's wall time, finished trials per hour and trained epochs per hour (the trials each search draws
differ, each worker's sampler being seeded apart, and so does their length: epochs per hour compares the
same kind of work), and their ratios.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_search_workers.py [--trials 8] data.train_subset=5000
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_sweep import run_sweep
from benchlib import Figures, add_common_args, header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="n_trials of each search")
    parser.add_argument("--workers", type=int, default=2)
    add_common_args(parser)
    args = parser.parse_args()
    search = [
        "hparams_search=mnist_optuna_workers",
        f"paths.data_dir={args.data_dir}",
        f"hydra.sweeper.n_trials={args.trials}",
        "hydra.sweeper.pruner=null",  # every trial runs its epochs: the same work in both searches
        *args.overrides,
    ]
    modes = {
        "one trial at a time": [*search, "hydra.sweeper.n_workers=1", "hydra/launcher=basic"],
        f"{args.workers} workers": [*search, f"hydra.sweeper.n_workers={args.workers}"],
    }
    print(header(f"Search throughput: {args.trials} trials ({' '.join(search)})"))
    subprocess.run([sys.executable, "-c", "import lightning, seqlab.pipeline"], check=True)  # disk cache
    seconds, epochs = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for mode, command in modes.items():
            shutil.rmtree(Path(out, "s"), ignore_errors=True)
            seconds[mode] = run_sweep(command, {}, Path(out, "s"))
            with open(Path(out, "s", "summary.csv"), newline="") as f:
                epochs[mode] = sum(int(row["epochs"] or 0) for row in csv.DictReader(f))
            print(f"{mode}: {seconds[mode]:.1f} s, {epochs[mode]} epochs trained", flush=True)
    figures = Figures("search_workers")
    for mode in modes:
        figures.add(f"{mode}: trials", args.trials / seconds[mode] * 3600, "trials/h")
        figures.add(f"{mode}: epochs", epochs[mode] / seconds[mode] * 3600, "epochs/h")
    one, many = (epochs[mode] / seconds[mode] for mode in modes)
    figures.add("workers / one at a time (epochs/h)", many / one, "x")
    figures.write(args.json, search=search, seconds=seconds, epochs=epochs)
    print(f"\nworkers / one at a time, epochs per hour: {many / one:.2f}x")


if __name__ == "__main__":
    main()
