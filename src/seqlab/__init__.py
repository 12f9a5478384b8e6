"""seqlab: recurrent sequence models on PyTorch Lightning and Hydra.

What a project built on seqlab imports (docs/extending.md) is listed in `__all__` and importable from
here; everything else is internal. The names load on first use, so `import seqlab` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "TaskModule": "seqlab.tasks",  # the base of a task: optimizer/scheduler binding, checkpoint metadata
    "SequenceClassifier": "seqlab.tasks",
    "LanguageModel": "seqlab.tasks",
    "Optimization": "seqlab.optimization",  # what a task updates its weights with, read from the config
    "InMemoryDataModule": "seqlab.data.base",  # the base of a data module: batching, DDP, exact resume
    "Encoder": "seqlab.models.registry",  # the interface of a sequence encoder (a user's cell)
    "CELLS": "seqlab.models.registry",  # every registered cell's name, seqlab's and installed packages'
    "register_encoder": "seqlab.models.registry",  # a cell by name, for code that is not installed
    "SequenceDataModule": "seqlab.data.base",  # the base of every data module: loaders, resume, state
    "compose": "seqlab.config",  # compose(*overrides): the config `seqlab-train <overrides>` would run
    "fit": "seqlab.pipeline",  # fit(cfg): train and test it as `seqlab-train` does; the final metrics
    "runs": "seqlab.results",  # runs(path): every run at or below path as one DataFrame
    "history": "seqlab.results",  # history(path): their per-epoch rows as one DataFrame
    "ConfigError": "seqlab.errors",
    "DataError": "seqlab.errors",
    "check_choice": "seqlab.errors",
    "check_dropout": "seqlab.errors",
    "check_positive": "seqlab.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'seqlab' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
