"""Hyperparameter search with current Optuna inside Hydra multirun (`hparams_search=<name>`).

Why not hydra-optuna-sweeper: it pins Optuna below 3. This sweeper is small: each trial's sampled
values become Hydra overrides, the job runs through the configured launcher like any sweep job, and
its returned `optimized_metric` is told to the study. The study lives in `<sweep_dir>/optuna.db`
(SQLite), so rerunning the same command resumes it: finished trials count towards `n_trials`, a
trial left running by a killed search is retried with the same values. Trials report the
validation metric after each epoch through `OptunaPruning`, and the pruner may stop them early
(in-process launchers only: the basic launcher, not submitit).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqlab.atomic import write_text_atomic
from seqlab.compat import job_error
from seqlab.errors import ConfigError
from seqlab.results import RETRIED_FILE

log = logging.getLogger(__name__)


def suggest(trial: Any, key: str, spec: str) -> Any:
    """One override value sampled from a Hydra sweep expression: choice(...), range(...), [tag(log,)] interval(...)."""
    override = OverridesParser.create().parse_overrides([f"{key}={spec}"])[0]
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(
            key, [v if isinstance(v, (int, float, str, bool)) else str(v) for v in sweep.list]
        )
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values):
            return trial.suggest_int(key, values[0], values[-1], step=int(sweep.step))
        return trial.suggest_categorical(key, values)
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return trial.suggest_int(key, sweep.start, sweep.end, log=log_scale)
        return trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log_scale)
    raise ConfigError(
        f"hydra.sweeper.params.{key}={spec!r} is not a search space; use choice(a,b), range(lo,hi[,step]) "
        "or interval(lo,hi), optionally tag(log, interval(lo,hi))"
    )


class OptunaSweeper(Sweeper):
    """Ask the study for a trial, run it as a Hydra job with its values as overrides, tell the result."""

    def __init__(
        self,
        params: DictConfig | dict | None = None,
        n_trials: int = 20,
        seed: int = 0,
        study_name: str | None = None,
        storage: str | None = None,
        pruner: Any = None,
        n_startup_trials: int = 5,
    ) -> None:
        self.params = dict(params or {})
        self.n_trials, self.seed, self.n_startup_trials = n_trials, seed, n_startup_trials
        self.study_name, self.storage, self.pruner_cfg = study_name, storage, pruner
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def study(self, sweep_dir: Path) -> Any:
        import optuna

        mode = self.config.get("optimized_mode", "max")
        if mode not in ("max", "min"):
            raise ConfigError(f"optimized_mode={mode!r} must be max or min")
        pruner = self.pruner_cfg or optuna.pruners.NopPruner()  # Hydra has instantiated a configured one
        if isinstance(pruner, (dict, DictConfig)):
            pruner = instantiate(pruner)
        where = {
            "study_name": self.study_name or "search",
            "storage": self.storage or f"sqlite:///{sweep_dir / 'optuna.db'}",
            "direction": "maximize" if mode == "max" else "minimize",
            "load_if_exists": True,
        }
        # A resumed search seeds its sampler past the trials the study holds: seeded as at the start, it
        # would draw the first trials' values again (its random sequence restarts with the process).
        held = len(optuna.create_study(**where).trials)
        sampler = optuna.samplers.TPESampler(seed=self.seed + held, n_startup_trials=self.n_startup_trials)
        return optuna.create_study(**where, sampler=sampler, pruner=pruner)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        from seqlab.callbacks.monitors import trial_of_this_process  # Lightning: loaded when a search runs

        if not self.params:
            raise ConfigError(
                "hydra.sweeper.params is empty: give the search space, e.g. in conf/hparams_search/"
            )
        if not self.config.get("optimized_metric"):
            raise ConfigError(
                "optimized_metric is not set: name the metric the search optimizes, e.g. val/acc"
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = self.study(sweep_dir)
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:
            log.info("Trial %d was left running by a stopped search: retrying its values", trial.number)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
        retried = [trial.number for trial in stale]  # the enqueued retries come first, in this order
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=finished)) - len(stale)
        log.info("Study %s: %d of %d trials done", sweep_dir / "optuna.db", done, self.n_trials)
        returns = []
        while done < self.n_trials:
            trial = study.ask()
            if retried:  # its summary row gives way to the retry's: a retried trial is listed once
                write_text_atomic(sweep_dir / str(retried.pop(0)) / RETRIED_FILE, f"{trial.number}\n")
            overrides = [*arguments] + [f"{k}={suggest(trial, k, str(v))}" for k, v in self.params.items()]
            with trial_of_this_process(trial):  # what OptunaPruning reports to
                result = self.launcher.launch([overrides], initial_job_idx=trial.number)[0]
            value = job_error(result)
            if isinstance(value, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
            elif isinstance(value, (int, float)) and math.isfinite(value):
                study.tell(trial, float(value))
            else:  # an exception, or no finite metric: the trial failed, the search goes on
                log.warning("Trial %d failed: %s", trial.number, value)
                study.tell(trial, state=TrialState.FAIL)
            done += 1
            returns.append([result])
        best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
        summary = (
            {"best_value": best.value, "best_params": best.params, "best_trial": best.number} if best else {}
        )
        OmegaConf.save(
            OmegaConf.create({**summary, "n_trials": len(study.trials)}),
            sweep_dir / "optimization_results.yaml",
        )
        log.info("Best trial: %s", summary or "none completed")
        return returns


def __getattr__(name: str) -> Any:
    if name == "OptunaPruning":  # where configs written before it joined seqlab.callbacks name it
        from seqlab.callbacks.monitors import OptunaPruning

        return OptunaPruning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
