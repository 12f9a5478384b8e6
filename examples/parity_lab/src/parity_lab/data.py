"""The parity task: is the number of ones among `length` random bits odd? Generated from a seed, nothing
to download; a classic that needs memory over the whole sequence (one flipped bit flips the label)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from seqlab import InMemoryDataModule, check_positive


class ParityDataModule(InMemoryDataModule):
    """Inputs (N, length, 1) of 0/1 floats, labels their sum modulo 2. Every split is drawn from its own
    seed (`seed`, `seed + 1`, `seed + 2`), so the same index holds the same example on every run."""

    def __init__(
        self,
        length: int = 8,
        train_size: int = 4096,
        val_size: int = 512,
        test_size: int = 512,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        shuffle_seed: int | None = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed)
        check_positive(length=length, train_size=train_size, val_size=val_size, test_size=test_size)
        self.length, self.sizes, self.seed = length, (train_size, val_size, test_size), seed

    @property
    def dims(self) -> dict[str, int]:
        return {"input_dim": 1, "num_classes": 2}

    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        def split(size: int, seed: int) -> TensorDataset:
            bits = torch.randint(0, 2, (size, self.length, 1), generator=torch.Generator().manual_seed(seed))
            return TensorDataset(bits.float(), bits.sum((1, 2)) % 2)

        train, val, test = (split(size, self.seed + i) for i, size in enumerate(self.sizes))
        return train, val, test
