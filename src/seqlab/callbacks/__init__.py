"""Lightning callbacks."""

from seqlab.callbacks.history import EpochHistory
from seqlab.callbacks.monitors import GradNormMonitor, NonFiniteLossGuard, OptunaPruning, TextSampleLogger
from seqlab.callbacks.preemption import SignalCheckpoint

__all__ = [
    "EpochHistory",
    "GradNormMonitor",
    "NonFiniteLossGuard",
    "OptunaPruning",
    "SignalCheckpoint",
    "TextSampleLogger",
]
