"""Plain nn.Modules, reusable across tasks; they know nothing of Lightning or Hydra."""

from seqlab.models.classifier import BagOfEmbeddings, SequenceClassifierNet
from seqlab.models.encoder import ENCODERS, build_encoder
from seqlab.models.language_model import RNNLanguageModel, generate, next_token
from seqlab.models.recurrent import CELLS, OwnRNN, RecurrentEncoder
from seqlab.models.transformer import PositionwiseFeedForward, TransformerEncoder

__all__ = [
    "BagOfEmbeddings",
    "CELLS",
    "ENCODERS",
    "PositionwiseFeedForward",
    "TransformerEncoder",
    "build_encoder",
    "OwnRNN",
    "RNNLanguageModel",
    "RecurrentEncoder",
    "SequenceClassifierNet",
    "generate",
    "next_token",
]
