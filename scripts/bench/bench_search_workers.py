"""Search throughput: an Optuna search of trials of mixed length, one trial at a time against `n_workers`
workers without batch barriers.

`hparams_search=mnist_optuna_workers` (trainer.max_epochs searched among 2, 5, 10 beside the model's
settings) runs twice through `python -m seqlab.train -m`, as a user would: with `hydra.sweeper.n_workers=1`
and the basic launcher (today's one-trial-at-a-time search, on torch's default threads, all cores), and
with the config's 2 workers, each a process of cores // 2 threads (`hydra/launcher=parallel`). Prints each
search's wall time and finished trials per hour, and their ratio.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_search_workers.py [--trials 8] data.train_subset=5000
"""

from __future__ import annotations

import argparse
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
    seconds = {}
    with tempfile.TemporaryDirectory() as out:
        for mode, command in modes.items():
            shutil.rmtree(Path(out, "s"), ignore_errors=True)
            seconds[mode] = run_sweep(command, {}, Path(out, "s"))
            print(f"{mode}: {seconds[mode]:.1f} s", flush=True)
    one, many = (args.trials / seconds[mode] * 3600 for mode in modes)
    figures = Figures("search_workers")
    figures.add("one trial at a time", one, "trials/h")
    figures.add(f"{args.workers} workers", many, "trials/h")
    figures.add("workers / one at a time", many / one, "x")
    figures.write(args.json, search=search, seconds=seconds)
    print(f"\nworkers / one at a time: {many / one:.2f}x")


if __name__ == "__main__":
    main()
