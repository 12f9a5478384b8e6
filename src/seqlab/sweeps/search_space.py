"""The search space of `hparams_search`: Hydra sweep expressions sampled by an Optuna trial, and the trials
a search runs first with values given (`hydra.sweeper.enqueue`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

from seqlab.errors import ConfigError


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


def enqueue_first(study: Any, params: Mapping[str, Any], trials: Sequence[Mapping[str, Any]] | None) -> None:
    """Queue `trials` (each {key: value} over the search space's keys) in a study that holds no trial yet:
    they are the search's first trials, with these values, then the sampler draws the rest. A resumed
    study has them already."""
    queued = []
    for k, values in enumerate(trials or []):
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(
                f"hydra.sweeper.enqueue[{k}]={values!r} is not a trial: give {{key: value}} over the "
                f"search space's keys ({', '.join(params)})"
            )
        values = {str(key): value for key, value in values.items()}
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise ConfigError(
                f"hydra.sweeper.enqueue[{k}] sets {', '.join(unknown)}, not in hydra.sweeper.params "
                f"({', '.join(params)}): a queued trial takes values of the searched keys only"
            )
        check_values(k, values, params)
        queued.append(values)
    if queued and not study.get_trials(deepcopy=False):
        for values in queued:
            study.enqueue_trial(values)


def check_values(k: int, values: dict[str, Any], params: Mapping[str, Any]) -> None:
    """A queued trial's values lie in the search space: refused here, not in the middle of a search."""
    import warnings

    from optuna.trial import FixedTrial

    trial = FixedTrial(values)
    for key, value in values.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial warns of a number out of range
            try:
                suggest(trial, key, str(params[key]))
            except (ValueError, UserWarning) as e:
                raise ConfigError(
                    f"hydra.sweeper.enqueue[{k}].{key}={value!r} is outside its search space "
                    f"{params[key]}: give a value the search could draw"
                ) from e
