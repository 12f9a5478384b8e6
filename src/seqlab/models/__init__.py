"""Plain nn.Modules, reusable across tasks; they know nothing of Lightning or Hydra."""

from seqlab.models.recurrent import CELLS, OwnRNN, RecurrentEncoder, SequenceClassifierNet

__all__ = ["CELLS", "OwnRNN", "RecurrentEncoder", "SequenceClassifierNet"]
