"""LightningDataModules; they know nothing of models."""

from seqlab.data.files import DataError
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.long_memory import LongMemoryDataModule
from seqlab.data.mnist import MNISTDataModule
from seqlab.data.ptb import PTBDataModule
from seqlab.data.text import Vocabulary

__all__ = [
    "DataError",
    "IMDBDataModule",
    "LongMemoryDataModule",
    "MNISTDataModule",
    "PTBDataModule",
    "Vocabulary",
]
