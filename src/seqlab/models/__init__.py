"""Plain nn.Modules, reusable across tasks; they know nothing of Lightning or Hydra."""

from seqlab.models.awd import AWDLanguageModelNet, LockedDropout, WeightDropLSTM
from seqlab.models.classifier import (
    BagOfEmbeddings,
    SequenceClassifierNet,
    SequenceNet,
    SequenceRegressorNet,
    StepClassifierNet,
)
from seqlab.models.diagonal import DiagonalRecurrentEncoder
from seqlab.models.language_model import LanguageModelNet, generate, next_token
from seqlab.models.recurrent import OwnRNN, RecurrentEncoder
from seqlab.models.registry import Encoder, build_encoder, encoder_names, register_encoder
from seqlab.models.transformer import PositionwiseFeedForward, SelfAttentionEncoder

RNNLanguageModel = LanguageModelNet  # the `_target_` older checkpoints store: they still load

__all__ = [
    "AWDLanguageModelNet",
    "LockedDropout",
    "WeightDropLSTM",
    "BagOfEmbeddings",
    "DiagonalRecurrentEncoder",
    "Encoder",
    "PositionwiseFeedForward",
    "SelfAttentionEncoder",
    "build_encoder",
    "encoder_names",
    "register_encoder",
    "OwnRNN",
    "LanguageModelNet",
    "RNNLanguageModel",
    "RecurrentEncoder",
    "SequenceClassifierNet",
    "SequenceNet",
    "SequenceRegressorNet",
    "StepClassifierNet",
    "generate",
    "next_token",
]
