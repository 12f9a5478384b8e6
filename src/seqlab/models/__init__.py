"""Plain nn.Modules, reusable across tasks; they know nothing of Lightning or Hydra."""

from seqlab.models.awd import AWDLanguageModelNet, LockedDropout, WeightDropLSTM
from seqlab.models.base import Encoder
from seqlab.models.classifier import BagOfEmbeddings, SequenceClassifierNet
from seqlab.models.diagonal import DIAGONAL_CELLS, DiagonalRecurrentEncoder
from seqlab.models.encoder import ENCODERS, build_encoder
from seqlab.models.language_model import LanguageModelNet, generate, next_token
from seqlab.models.recurrent import CELLS, OwnRNN, RecurrentEncoder
from seqlab.models.transformer import PositionwiseFeedForward, SelfAttentionEncoder

RNNLanguageModel = LanguageModelNet  # the `_target_` older checkpoints store: they still load

__all__ = [
    "AWDLanguageModelNet",
    "LockedDropout",
    "WeightDropLSTM",
    "BagOfEmbeddings",
    "CELLS",
    "DIAGONAL_CELLS",
    "DiagonalRecurrentEncoder",
    "ENCODERS",
    "Encoder",
    "PositionwiseFeedForward",
    "SelfAttentionEncoder",
    "build_encoder",
    "OwnRNN",
    "LanguageModelNet",
    "RNNLanguageModel",
    "RecurrentEncoder",
    "SequenceClassifierNet",
    "generate",
    "next_token",
]
