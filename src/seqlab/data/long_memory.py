"""The synthetic long-memory problems: the adding problem and copy memory, drawn on the fly from a seed.

Example i of a split is drawn from its own generator, seeded by (data_seed, split, i) through numpy's
SeedSequence (torch's CPU generator keeps only 32 bits of a seed): the same example for the same index
on every run, rank and worker, and nothing to download or keep.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from seqlab.data.base import InMemoryDataModule
from seqlab.errors import ConfigError, check_positive

SPLITS = ("train", "val", "test")
COPY_SYMBOLS, COPY_LENGTH = 8, 10  # symbols 1..8 to remember, 10 of them; 0 is blank, 9 the delimiter


class GeneratedDataset:
    """`size` examples, example i made by `make(rng)` with rng seeded by (*seed, i); `dataset[list of
    indices]` stacks them into one batch (what InMemoryDataModule's loaders ask for)."""

    def __init__(
        self, size: int, seed: tuple[int, ...], make: Callable[[np.random.Generator], tuple[Tensor, ...]]
    ) -> None:
        self.size, self.seed, self.make = size, seed, make

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, indices: list[int]) -> tuple[Tensor, ...]:
        examples = [self.make(np.random.default_rng([*self.seed, int(i)])) for i in indices]
        return tuple(torch.stack(parts) for parts in zip(*examples, strict=True))


def adding_example(seq_len: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """(T, 2) inputs: values uniform in [0, 1] and a marker channel with two ones, one in each half;
    target: the sum of the two marked values. Predicting the mean, 1, scores the MSE of the sum: 1/6."""
    values = torch.from_numpy(rng.random(seq_len, dtype=np.float32))
    half = seq_len // 2
    first, second = int(rng.integers(max(half, 1))), half + int(rng.integers(seq_len - half))
    markers = torch.zeros(seq_len)
    markers[[first, second]] = 1.0
    target = values[first] + values[second] if first != second else values[first]
    return torch.stack([values, markers], dim=1), target.reshape(1)


def copy_example(seq_len: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Copy memory (Arjovsky et al. 2016): 10 symbols, T - 1 blanks, the delimiter, 10 blanks (T + 20
    steps, one-hot over 10 ids); the target is blank until the last 10 steps, which recall the symbols."""
    symbols = torch.from_numpy(rng.integers(1, COPY_SYMBOLS + 1, COPY_LENGTH))
    ids = torch.zeros(seq_len + 2 * COPY_LENGTH, dtype=torch.long)
    ids[:COPY_LENGTH] = symbols
    ids[COPY_LENGTH + seq_len - 1] = COPY_SYMBOLS + 1
    target = torch.zeros_like(ids)
    target[-COPY_LENGTH:] = symbols
    return torch.nn.functional.one_hot(ids, COPY_SYMBOLS + 2).float(), target


class LongMemoryDataModule(InMemoryDataModule):
    """`problem: adding | copy` at sequence length `seq_len` (T): `train_size` examples an epoch, fixed
    `val_size`/`test_size` ones, all drawn from `data_seed` (the training seed only orders the batches).

    `curriculum: [T_0, T_1, ...]` trains epoch k on length T_k, then on `seq_len` once the list is used
    up; validation and test are always at `seq_len`, so the budget and the score are the problem's own.
    """

    PROBLEMS = ("adding", "copy")

    def __init__(
        self,
        problem: str = "adding",
        seq_len: int = 100,
        train_size: int = 10000,
        val_size: int = 1000,
        test_size: int = 1000,
        data_seed: int = 0,
        batch_size: int = 50,
        eval_batch_size: int | None = None,
        shuffle_seed: int | None = 0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        curriculum: list[int] | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed, num_workers, pin_memory)
        if problem not in self.PROBLEMS:
            raise ConfigError(f"data.problem={problem!r} is not a long-memory problem; allowed: adding, copy")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ConfigError(f"data.seq_len={seq_len!r}: the sequence length T must be an integer >= 1")
        check_positive(train_size=train_size, val_size=val_size, test_size=test_size)
        curriculum = list(curriculum or [])
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in curriculum):
            raise ConfigError(
                f"data.curriculum={curriculum!r}: a list of sequence lengths (integers >= 1), one an epoch"
            )
        if curriculum and num_workers:
            raise ConfigError(
                "data.curriculum needs data.num_workers=0: the length follows the trainer's epoch"
            )
        self.problem, self.seq_len, self.data_seed, self.curriculum = problem, seq_len, data_seed, curriculum
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    @property
    def dims(self) -> dict[str, int]:
        """adding: 2 input channels, 1 output (regression); copy: one-hot ids in, a class per step out."""
        if self.problem == "adding":
            return {"input_dim": 2, "num_classes": 1}
        return {"input_dim": COPY_SYMBOLS + 2, "num_classes": COPY_SYMBOLS + 2}

    @property
    def baseline(self) -> float:
        """The loss of the best memoryless answer: the mean (adding, MSE 1/6) or, for copy, blanks then a
        uniform guess among the 8 symbols (cross-entropy 10 log 8 / (T + 20) per step)."""
        if self.problem == "adding":
            return 1 / 6
        return (
            COPY_LENGTH
            * torch.log(torch.tensor(float(COPY_SYMBOLS))).item()
            / (self.seq_len + 2 * COPY_LENGTH)
        )

    def train_length(self) -> int:
        """This epoch's training length: the curriculum's entry for it, else `seq_len`."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self.curriculum[epoch] if epoch < len(self.curriculum) else self.seq_len

    def make_splits(self) -> tuple[GeneratedDataset, GeneratedDataset, GeneratedDataset]:
        example = adding_example if self.problem == "adding" else copy_example

        def train_example(rng: np.random.Generator) -> tuple[Tensor, Tensor]:
            return example(self.train_length(), rng)

        return tuple(  # type: ignore[return-value]
            GeneratedDataset(
                self.sizes[split],
                (self.data_seed, i),
                train_example if split == "train" and self.curriculum else partial(example, self.seq_len),
            )
            for i, split in enumerate(SPLITS)
        )
