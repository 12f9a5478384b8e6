"""Plain nn.Modules, reusable across tasks; they know nothing of Lightning or Hydra."""

from seqlab.models.language_model import RNNLanguageModel, generate, next_token
from seqlab.models.recurrent import CELLS, BagOfEmbeddings, OwnRNN, RecurrentEncoder, SequenceClassifierNet

__all__ = [
    "BagOfEmbeddings",
    "CELLS",
    "OwnRNN",
    "RNNLanguageModel",
    "RecurrentEncoder",
    "SequenceClassifierNet",
    "generate",
    "next_token",
]
