"""A sweep, from launch to summary (one module each):

- launchers: parallel_launcher.py (`hydra/launcher=parallel`, local processes), slurm_launcher.py
  (`hydra/launcher=slurm`, submit and return) with queue.py (what was submitted, what squeue says);
- report.py: the default sweeper, which ends a sweep with failed jobs in one line each;
- summary.py: `summarize(sweep_dir)` (Markdown and CSV tables from each job's `seqlab.results.read_run`,
  mean ± std when seeds were swept, figures from `seqlab.plots`) and `SweepSummary`, the Hydra callback
  that records a failed job's error and rewrites the summary after each job;
- optuna_search.py: the Optuna sweeper and its workers; search_space.py: the search space sampled by a
  trial, and the trials a search is given to run first.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: Hydra imports the launchers' and sweepers' plugins (which import this package) in
# every Hydra application, and the summary's modules pull in Lightning.
_NAMES = {"summarize": "seqlab.sweeps.summary", "SweepSummary": "seqlab.sweeps.summary"}
__all__ = list(_NAMES)


def has_search_workers(config: Any) -> bool:
    """Whether the sweep is a search run by workers (`hydra.sweeper.n_workers` > 1): its launcher runs
    the workers side by side, and they need nothing back from the command that starts them."""
    return (config.hydra.sweeper.get("n_workers") or 1) > 1


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'seqlab.sweeps' has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)
