"""LightningModules: each joins a plain model to a loss, metrics and optimization."""

from seqlab.optimization import NTASGD  # its config name before it joined optimization.py
from seqlab.tasks.awd import AWDLanguageModel
from seqlab.tasks.base import TaskModule
from seqlab.tasks.classification import SequenceClassifier
from seqlab.tasks.language_model import LanguageModel
from seqlab.tasks.long_memory import SequenceRegressor, StepClassifier

__all__ = [
    "AWDLanguageModel",
    "NTASGD",
    "LanguageModel",
    "SequenceClassifier",
    "SequenceRegressor",
    "StepClassifier",
    "TaskModule",
]
