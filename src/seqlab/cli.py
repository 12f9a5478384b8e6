"""The entry points: one Hydra app per command, and what they share (`launch`, `run`).

`python -m seqlab.<name>` (the two-line `seqlab/<name>.py`) and the `seqlab-<name>` console script start
`<name>_main` here. Each app composes its config (`conf/<name>.yaml`) and calls one function through
`run`, which ends a single run's user error (config, data, training) with its message alone. That
function is the command's work, imported only once Hydra has parsed the command line (so that `--help`
and a config error come fast): `pipeline.py` for train and eval, `seqlab/tools/<name>.py` for the tools.
The apps live here, not in `seqlab/<name>.py`: run with `-m`, that module is `__main__`, and a launcher
that pickles the task function (submitit's, `hydra/launcher=slurm`) must import it by name.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.config import CONF_DIR, print_config
from seqlab.errors import USER_ERRORS, os_error_message
from seqlab.rundir.records import restore_config_records
from seqlab.user_config import check_user_configs


def launch(app: Callable[[], Any]) -> None:
    """Start a Hydra app once the user's config folders are checked: a missing one ends in one line, a
    user config that seqlab's own of the same name hides gets a warning."""
    try:
        warnings = check_user_configs(sys.argv[1:])
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for warning in warnings:
        print(warning, file=sys.stderr)
    app()


def run(task_function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call `task_function(cfg)`; in a single run, a user error (config, data, training) ends with its message alone."""
    from seqlab.compat import quiet_library_notices

    quiet_library_notices()
    try:
        return task_function(cfg)
    except (*USER_ERRORS, OSError) as err:  # OSError: a write the file system refused (full, read-only...)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        restore_config_records()  # a refused resume leaves its run dir's records as they were
        raise SystemExit(f"error: {os_error_message(err) if isinstance(err, OSError) else err}") from None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    """`python -m seqlab.train experiment=...`: compose the config, train, test, write metrics.json."""
    from seqlab import pipeline  # heavy imports after Hydra has parsed the command line

    if cfg.get("print_config", True):
        print_config(
            cfg, ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")
        )
    return run(lambda c: pipeline.train(c)[0], cfg)


def train_main() -> None:
    # `sweep` is a group of the defaults list, chosen as `sweep=<name>`; command lines written as
    # `+sweep=<name>` keep working.
    sys.argv = [arg.replace("+sweep=", "sweep=", 1) if arg.startswith("+sweep=") else arg for arg in sys.argv]
    launch(train_app)


CHECKPOINT_GROUPS = ("experiment", "data", "model")  # what a checkpoint's own run decides


def command(config_name: str, work: str) -> Callable[[], None]:
    """The `main` of a command that composes `conf/<config_name>.yaml` and calls `work` ("module:function")."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def app(cfg: DictConfig) -> None:
        module, function = work.split(":")
        run(getattr(importlib.import_module(module), function), cfg)

    def main() -> None:
        chosen = [a for a in sys.argv[1:] if a.lstrip("+~").split("=")[0].split(".")[0] in CHECKPOINT_GROUPS]
        if chosen:
            raise SystemExit(
                f"error: {chosen[0]}: seqlab.{config_name} takes the model and data from ckpt_path's run; "
                "experiment, data and model choose them for seqlab.train"
            )
        launch(app)

    main.__doc__ = f"`python -m seqlab.{config_name}`: runs {work}."
    return main


eval_main = command("eval", "seqlab.pipeline:evaluate")  # test a checkpoint with its own model and data
sample_main = command("sample", "seqlab.tools.sample:sample_from_checkpoint")  # text from a language model
embeddings_main = command("embeddings", "seqlab.tools.embeddings:report_embeddings")  # word distances
predict_main = command("predict", "seqlab.tools.predict:predict_from_checkpoint")  # label reviews
attack_main = command("attack", "seqlab.tools.attack:attack_checkpoint")  # adversarial digits


def summarize_main(argv: list[str] | None = None) -> None:
    """`python -m seqlab.summarize <sweep_dir>`: (re)write a sweep's summary.csv, summary.md and plots."""
    parser = argparse.ArgumentParser(prog="seqlab-summarize", description=summarize_main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/imdb_optimizers")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir}: no such directory")
    from seqlab.sweeps.summary import summarize

    rows = summarize(args.sweep_dir, plots=not args.no_plots)
    if not rows:
        parser.error(f"{args.sweep_dir}: no job dirs (with .hydra/config.yaml) inside; is it a sweep dir?")
    print((args.sweep_dir / "summary.md").read_text(), end="")


def runs_main(argv: list[str] | None = None) -> None:
    """`seqlab-runs <path>`: every run at or below a run dir, sweep dir or outputs folder, one line each."""
    parser = argparse.ArgumentParser(prog="seqlab-runs", description=runs_main.__doc__)
    parser.add_argument("path", type=Path, nargs="?", default=Path("outputs"), help="default: outputs")
    parser.add_argument(
        "--csv", type=Path, help="also write every column (the flattened configs) to this file"
    )
    parser.add_argument("--history", action="store_true", help="the per-epoch rows instead of one per run")
    args = parser.parse_args(argv)
    from seqlab.errors import DataError
    from seqlab.results import history, runs

    try:
        frame = history(args.path) if args.history else runs(args.path)
    except DataError as err:
        parser.error(str(err))
    if frame.empty:
        parser.error(f"{args.path}: no run dirs (with .hydra/config.yaml) at or below it")
    if args.csv:
        frame.to_csv(args.csv, index=False)
    with contextlib.suppress(BrokenPipeError):  # `seqlab-runs | head`
        print(frame[shown_columns(frame, args.history)].to_string(index=False, max_colwidth=40))


def shown_columns(frame: Any, per_epoch: bool = False) -> list[str]:
    """What fits a terminal: the run, its status, the config values that differ between the runs and the
    final metrics, or each epoch's (all columns go to --csv)."""
    described = {
        "run",
        "status",
        "epochs",
        "best_epoch",
        "machine",
        "error",
        "path",
        "epoch",
        "step",
        "run_name",
    }
    described |= {"wall_time_s", "train_batches"}  # shown last, or not at all
    config = [
        c for c in frame.columns if c not in described and "/" not in c and frame[c].astype(str).nunique() > 1
    ]
    metrics = [c for c in frame.columns if "/" in c and (per_epoch or not c.startswith("train/"))]
    fixed = [c for c in ("run", "status", "epoch", "step") if c in frame.columns]
    return [*fixed, *config, *metrics, *[c for c in ("wall_time_s",) if c in frame.columns]]
