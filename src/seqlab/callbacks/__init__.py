"""Lightning callbacks."""

from seqlab.callbacks.grad_norm import GradNormMonitor
from seqlab.callbacks.guards import NonFiniteLossGuard
from seqlab.callbacks.history import EpochHistory
from seqlab.callbacks.preemption import SignalCheckpoint
from seqlab.callbacks.text_sample import TextSampleLogger

__all__ = ["EpochHistory", "GradNormMonitor", "NonFiniteLossGuard", "SignalCheckpoint", "TextSampleLogger"]
