"""Search throughput: an Optuna search of trials of mixed length, one trial at a time against `n_workers`
workers without batch barriers.

`hparams_search=mnist_optuna_workers` (trainer.max_epochs searched among 2, 5, 10 beside the model's
settings) runs twice through `python -m seqlab.train -m`, as a user would: with `hydra.sweeper.n_workers=1`
and the basic launcher (today's one-trial-at-a-time search, on torch's default threads, all cores), and
with the config's 2 workers, each a process of cores // 2 threads (`hydra/launcher=parallel`). Both train
the same models: the workers' search runs the first search's trials, queued (`hydra.sweeper.enqueue`), in
its own order. Prints each search's wall time, finished trials per hour and trained epochs per hour, and
their ratios.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_search_workers.py [--trials 8] data.train_subset=5000
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from bench_sweep import run_sweep
from benchlib import Figures, add_common_args, header


def trial_values(sweep_dir: Path) -> list[dict]:
    """The values of the finished trials of the search in `sweep_dir`, in trial order."""
    from seqlab.sweeps.optuna_search import FINISHED, counted, storage_of

    # As a rerun would open it: the workers' journal where there is one, else the SQLite file.
    study = optuna.load_study(
        study_name="search", storage=storage_of({"storage": None, "n_workers": 1}, sweep_dir)
    )
    return [t.params for t in counted(study, FINISHED)]


def queued(trials: list[dict]) -> str:
    """`trials` as the value of a `hydra.sweeper.enqueue=` override."""
    return "[" + ",".join("{" + ",".join(f"{k}:{v!r}" for k, v in t.items()) + "}" for t in trials) + "]"


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
    seconds, epochs, drawn = {}, {}, []
    with tempfile.TemporaryDirectory() as out:
        for mode, command in modes.items():
            sweep_dir = Path(out, mode.replace(" ", "_"))
            if drawn:  # the first search's trials, queued: both searches train the same models
                command = [*command, f"hydra.sweeper.enqueue={queued(drawn)}"]
            seconds[mode] = run_sweep(command, {}, sweep_dir)
            with open(sweep_dir / "summary.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            failed = [row["job"] for row in rows if row["status"] != "done"]
            if failed:
                raise SystemExit(f"error: {mode}: trials {', '.join(failed)} did not finish ({sweep_dir})")
            epochs[mode] = sum(int(row["epochs"]) for row in rows)
            trials = trial_values(sweep_dir)
            if drawn and sorted(map(str, trials)) != sorted(map(str, drawn)):
                raise SystemExit(f"error: {mode} ran other trials than the first search: {trials} != {drawn}")
            drawn = trials
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
