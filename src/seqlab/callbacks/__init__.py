"""Lightning callbacks."""

from seqlab.callbacks.grad_norm import GradNormMonitor

__all__ = ["GradNormMonitor"]
