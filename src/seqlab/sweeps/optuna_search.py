"""Hyperparameter search with current Optuna inside Hydra multirun (`hparams_search=<name>`).

Why not hydra-optuna-sweeper: it pins Optuna below 3. This sweeper is small: each trial's sampled
values become Hydra overrides, the job runs through the configured launcher like any sweep job, and
its returned `optimized_metric` is told to the study. The study lives in `<sweep_dir>/optuna.db`
(SQLite), so rerunning the same command resumes it: finished trials count towards `n_trials`, a
trial left running by a killed search is retried with the same values. Trials report the
validation metric after each epoch through `OptunaPruning`, and the pruner may stop them early
(in-process launchers only: the basic launcher, not submitit).

With `n_workers: N` > 1 the search has no batch barrier: the launcher runs N workers (`hydra/launcher=
parallel`: local processes; `hydra/launcher=slurm`: SLURM jobs, `wait=false` returns at once), each a loop
that asks the shared study for a trial, runs it in its own process (so pruning works) and asks again as
soon as it ends. The study is then an Optuna journal file, `<sweep_dir>/optuna.journal`, whose lock is safe
on a shared file system (or the `storage` URL given). A trial numbered past what `n_trials` needs is given
back, so the study ends with exactly `n_trials` finished trials; trials left running by workers that are
gone (killed process, SLURM job no longer queued) are retried with the same values when the command runs
again.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from seqlab.atomic import write_text_atomic
from seqlab.compat import job_error
from seqlab.errors import ConfigError
from seqlab.results import RETRIED_FILE
from seqlab.sweeps.search_space import enqueue_first, suggest

log = logging.getLogger(__name__)


FINISHED = ("COMPLETE", "PRUNED", "FAIL")
RETRIED, SURPLUS = "retried", "surplus"  # user attrs of trials that do not count towards n_trials


def counted(study: Any, states: tuple[str, ...] | None = None) -> list[Any]:
    """The study's trials that count towards n_trials (not a retried or surplus one), in `states`."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if not (t.user_attrs.get(RETRIED) or t.user_attrs.get(SURPLUS))
        and (states is None or t.state.name in states)
    ]


def worker_alive(trial: Any) -> bool:
    """Whether the worker that runs `trial` is still there: its SLURM job queued, or its process alive on
    this host. A trial that says nothing of its worker (a one-process search) is not."""
    attrs = trial.user_attrs
    if attrs.get("slurm_job"):
        from seqlab.slurm import is_queued

        return is_queued(str(attrs["slurm_job"]))
    if attrs.get("host") == socket.gethostname() and attrs.get("pid"):
        try:
            os.kill(int(attrs["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return int(attrs["pid"]) != os.getpid()
    return False


def retry_stale(study: Any) -> None:
    """Trials left running by a search or worker that is gone: failed and queued again with the same
    values (the retry names the trial it replaces in `retry_of`)."""
    from optuna.trial import Trial, TrialState

    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if not worker_alive(t)]
    for trial in stale:
        log.info("Trial %d was left running by a stopped search: retrying its values", trial.number)
        Trial(study, trial._trial_id).set_user_attr(RETRIED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def tell(study: Any, trial: Any, result: Any) -> None:
    """A finished job's outcome to the study: its metric, pruned, or failed (the search goes on)."""
    import optuna
    from optuna.trial import TrialState

    value = job_error(result)
    if isinstance(value, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
    elif isinstance(value, (int, float)) and math.isfinite(value):
        study.tell(trial, float(value))
    else:  # an exception, or no finite metric
        log.warning("Trial %d failed: %s", trial.number, value)
        study.tell(trial, state=TrialState.FAIL)


def note_retry(sweep_dir: Path, trial: Any) -> None:
    """A retried trial's summary row gives way to its retry's: it is listed once."""
    replaced = trial.user_attrs.get("retry_of")
    if replaced is not None:
        write_text_atomic(sweep_dir / str(replaced) / RETRIED_FILE, f"{trial.number}\n")


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
        n_workers: int = 1,
        enqueue: list | None = None,
    ) -> None:
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigError(
                f"hydra.sweeper.n_workers={n_workers!r} must be a whole number of workers, 1 or more"
            )
        self.params = dict(params or {})
        self.n_trials, self.seed, self.n_startup_trials = n_trials, seed, n_startup_trials
        if isinstance(enqueue, ListConfig):
            enqueue = OmegaConf.to_container(enqueue)
        self.n_workers, self.enqueue = n_workers, list(enqueue or [])
        self.study_name, self.storage, self.pruner_cfg = study_name, storage, pruner
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        if self.n_workers > 1:  # the launcher runs workers, each running trials of the task
            task_function = TrialWorker(self, task_function)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def settings(self) -> dict[str, Any]:
        """What a worker needs to open the same study."""
        keys = ("params", "n_trials", "seed", "study_name", "storage", "n_startup_trials", "n_workers")
        return {k: getattr(self, k) for k in keys} | {"pruner": self.pruner_cfg}

    def study(self, sweep_dir: Path) -> Any:
        return open_study(self.settings(), sweep_dir, self.config.get("optimized_mode", "max"))

    def sweep(self, arguments: list[str]) -> Any:
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
        enqueue_first(study, self.params, self.enqueue)
        retry_stale(study)
        done = len(counted(study, FINISHED))
        log.info("Study in %s: %d of %d trials done", sweep_dir, done, self.n_trials)
        returns = []
        if self.n_workers > 1:
            if done < self.n_trials:
                log.info("Starting %d workers", self.n_workers)
                workers = [
                    [*arguments, f"hydra.sweep.subdir=workers/{k}", "hydra.output_subdir=null"]
                    for k in range(self.n_workers)
                ]
                returns.append(self.launcher.launch(workers, initial_job_idx=0))
            study = self.study(sweep_dir)
        while self.n_workers == 1 and done < self.n_trials:
            trial = study.ask()
            note_retry(sweep_dir, trial)
            overrides = [*arguments] + [f"{k}={suggest(trial, k, str(v))}" for k, v in self.params.items()]
            with trial_of_this_process(trial):  # what OptunaPruning reports to
                result = self.launcher.launch([overrides], initial_job_idx=trial.number)[0]
            tell(study, trial, result)
            done += 1
            returns.append([result])
        from optuna.trial import TrialState

        best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
        summary = (
            {"best_value": best.value, "best_params": best.params, "best_trial": best.number} if best else {}
        )
        OmegaConf.save(
            OmegaConf.create({**summary, "n_trials": len(counted(study, FINISHED))}),
            sweep_dir / "optimization_results.yaml",
        )
        log.info("Best trial: %s", summary or "none completed")
        return returns


def __getattr__(name: str) -> Any:
    if name == "OptunaPruning":  # where configs written before it joined seqlab.callbacks name it
        from seqlab.callbacks.monitors import OptunaPruning

        return OptunaPruning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def storage_of(settings: dict[str, Any], sweep_dir: Path) -> Any:
    """The study's storage: the given URL, else a journal file shared by workers, else SQLite."""
    if settings["storage"]:
        return settings["storage"]
    journal = sweep_dir / "optuna.journal"
    if settings["n_workers"] == 1 and not journal.exists():
        return f"sqlite:///{sweep_dir / 'optuna.db'}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))


def open_study(settings: dict[str, Any], sweep_dir: Path, mode: str, worker: int = 0) -> Any:
    """The search's study, created or loaded, with its sampler and pruner."""
    import optuna

    if mode not in ("max", "min"):
        raise ConfigError(f"optimized_mode={mode!r} must be max or min")
    pruner = settings["pruner"] or optuna.pruners.NopPruner()  # Hydra has instantiated a configured one
    if isinstance(pruner, (dict, DictConfig)):
        pruner = instantiate(pruner)
    where = {
        "study_name": settings["study_name"] or "search",
        "storage": storage_of(settings, sweep_dir),
        "direction": "maximize" if mode == "max" else "minimize",
        "load_if_exists": True,
    }
    # A resumed search seeds its sampler past the trials the study holds: seeded as at the start, it
    # would draw the first trials' values again (its random sequence restarts with the process).
    # Each worker draws from a sequence of its own.
    held = len(optuna.create_study(**where).trials)
    seed = settings["seed"] + held + 7919 * worker
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings["n_startup_trials"])
    return optuna.create_study(**where, sampler=sampler, pruner=pruner)


class TrialWorker:
    """A worker of an `n_workers` search, run by the launcher as a job: ask the shared study for a trial,
    run it as a Hydra job in this process (its dir `<sweep_dir>/<trial number>`), tell the result, and
    ask again at once, until the study holds `n_trials` counted trials. Returns the trials it ran."""

    def __init__(self, sweeper: OptunaSweeper, task_function: TaskFunction) -> None:
        self.settings, self.task_function = sweeper.settings(), task_function
        self.config, self.hydra_context = sweeper.config, sweeper.hydra_context

    def __call__(self, cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import run_job
        from optuna.trial import TrialState

        from seqlab.callbacks.monitors import trial_of_this_process
        from seqlab.sweeps.parallel_launcher import job_config

        assert self.config is not None
        worker = int(HydraConfig.get().job.num)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        mode = str(self.config.get("optimized_mode", "max"))
        study = open_study(self.settings, sweep_dir, mode, worker=worker)
        arguments = list(HydraConfig.get().overrides.task)
        identity = {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
        if os.environ.get("SLURM_JOB_ID"):
            identity["slurm_job"] = os.environ["SLURM_JOB_ID"]
        ran = 0
        while True:
            trial = study.ask()
            earlier = [t for t in counted(study) if t.number <= trial.number]
            surplus = len(earlier) > self.settings["n_trials"]  # the search has its trials already
            params = {} if surplus else self.settings["params"]
            values = [f"{k}={suggest(trial, k, str(v))}" for k, v in params.items()]
            # After the values: a running trial that names its worker has them all.
            for key, value in identity.items():
                trial.set_user_attr(key, value)
            if surplus:  # given back at once
                trial.set_user_attr(SURPLUS, True)
                study.tell(trial, state=TrialState.FAIL)
                return ran
            note_retry(sweep_dir, trial)
            config = job_config(self.hydra_context, self.config, [*arguments, *values], trial.number)
            log.info("Worker %d: trial %d: %s", worker, trial.number, " ".join(values))
            with trial_of_this_process(trial):
                result = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            tell(study, trial, result)
            ran += 1
