"""Lightning callbacks."""

from seqlab.callbacks.grad_norm import GradNormMonitor
from seqlab.callbacks.text_sample import TextSampleLogger

__all__ = ["GradNormMonitor", "TextSampleLogger"]
