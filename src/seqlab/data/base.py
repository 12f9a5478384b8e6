"""What every data module shares: the base class, its batches, their split across DDP ranks, and an exact resume.

`SequenceDataModule` owns the loaders, the resume position and `state_dict`; a subclass says how one
split becomes a loader (`loader`) and what else its checkpoint keeps (`extra_state`, e.g. a vocabulary).
`InMemoryDataModule` adds the case of three splits held in memory and indexed by lists (MNIST, the
long-memory problems, user data modules).

Batches are split across DDP ranks here (the trainer's `use_distributed_sampler` is off): every rank
draws the same epoch order from `seed + epoch`, cuts it into per-device batches and takes every
`world`-th one, so global step k covers the same examples as batch k of a single process with a `world`
times larger batch, and the order never depends on the global random state (an exact resume).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqlab.compat import batches_done_in_epoch
from seqlab.errors import ConfigError, check_positive

MakeBatches = Callable[[torch.Generator | None], list[list[int]]]


def rank_and_world(trainer: L.Trainer | None) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def pin_memory(setting: bool | None, trainer: L.Trainer | None) -> bool:
    """A data module's `pin_memory`; null pins the batches when the trainer runs on a GPU (page-locked
    memory makes the copies asynchronous) and not otherwise (pinning needs one)."""
    if setting is not None:
        return setting
    return trainer is not None and trainer.strategy.root_device.type == "cuda"


def draw_seed(seed: int | None, trainer: L.Trainer | None) -> int:
    """A data module's `shuffle_seed`; null (an unseeded run) draws a fresh one, the same on every DDP rank
    (rank 0's), so that unseeded runs do not all share one data order."""
    if seed is not None:
        return seed
    drawn = int.from_bytes(os.urandom(4), "little") >> 1
    if trainer is not None and trainer.world_size > 1:
        drawn = trainer.strategy.broadcast(drawn, src=0)
    return drawn


def rank_batches(
    make_batches: MakeBatches,
    shuffle: bool,
    seed: int | None,
    trainer: L.Trainer | None,
    resume_at: dict[str, int] | None = None,
) -> RankBatches:
    """The sampler of this trainer's rank, with `seed` drawn when null (see `draw_seed`)."""
    return RankBatches(make_batches, shuffle, draw_seed(seed, trainer), *rank_and_world(trainer), resume_at)


def train_position(trainer: L.Trainer | None) -> dict[str, dict[str, int]]:
    """A data module's checkpoint state for where training is in its epoch: `{"train_position": {"epoch",
    "batches"}}`, the batches being those whose step has run (a resume skips them); {} outside training."""
    if trainer is None or trainer.state.fn != "fit" or not trainer.training:
        return {}
    batches = batches_done_in_epoch(trainer)
    return {"train_position": {"epoch": trainer.current_epoch, "batches": batches}}


def loader_generator() -> torch.Generator:
    """A DataLoader's own generator. Each new iterator draws a seed from its loader's generator; from the
    global one, that draw would shift the random streams (dropout) of a run resumed mid-epoch, whose
    iterator is made after the restore, against the run never stopped."""
    return torch.Generator()


def chunks(order: torch.Tensor, size: int) -> list[list[int]]:
    return [order[i : i + size].tolist() for i in range(0, len(order), size)]


def shuffled_batches(n: int, batch_size: int) -> MakeBatches:
    """Plain batches: a seeded permutation (or file order, with no generator) cut into `batch_size` pieces."""

    def make(generator: torch.Generator | None) -> list[list[int]]:
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        return chunks(order, batch_size)

    return make


def bucket_batches(lengths: torch.Tensor, batch_size: int, pool: int = 50) -> MakeBatches:
    """Batches of similar length, to cut padding: shuffle, sort pools of `pool` batches by length, shuffle
    the batches. Without a generator (evaluation): one deterministic pass, longest last."""

    def make(generator: torch.Generator | None) -> list[list[int]]:
        if generator is None:
            return chunks(torch.argsort(lengths, stable=True), batch_size)
        order = torch.randperm(len(lengths), generator=generator)
        batches: list[list[int]] = []
        for start in range(0, len(order), batch_size * pool):
            chunk = order[start : start + batch_size * pool]
            batches += chunks(chunk[torch.argsort(lengths[chunk], stable=True)], batch_size)
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    return make


class RankBatches(Sampler[list[int]]):
    """This rank's batches of an epoch. Training (`shuffle`) drops the last `< world` batches so that every
    rank takes the same number of steps; evaluation keeps them all (each example is scored exactly once),
    split further when there are fewer batches than ranks: a rank with nothing to evaluate would leave
    the others waiting for it at the end-of-epoch metric sync.
    """

    def __init__(
        self,
        make_batches: MakeBatches,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        resume_at: dict[str, int] | None = None,
    ) -> None:
        self.make_batches, self.shuffle = make_batches, shuffle
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0
        self.resume_at = resume_at  # a mid-epoch checkpoint's position: that epoch skips its done batches
        self._count = len(make_batches(None) if shuffle else self._evaluation_batches())

    @property
    def sampler(self) -> RankBatches:
        # Lightning calls set_epoch on `dataloader.sampler` and `dataloader.batch_sampler.sampler` at
        # each epoch start, never on the batch sampler itself: this batch sampler is its own sampler.
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _evaluation_batches(self) -> list[list[int]]:
        batches = self.make_batches(None)
        if len(batches) >= self.world:
            return batches
        order = [i for batch in batches for i in batch]
        if len(order) < self.world:
            raise ConfigError(
                f"{len(order)} examples to evaluate cannot be shared by {self.world} processes: "
                "every process needs at least one (use fewer devices or a larger split)"
            )
        return [
            order[r * len(order) // self.world : (r + 1) * len(order) // self.world]
            for r in range(self.world)
        ]

    def _usable(self) -> int:
        return self._count - self._count % self.world if self.shuffle else self._count

    def __len__(self) -> int:
        return len(range(self.rank, self._usable(), self.world))

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            batches = self.make_batches(generator)[: self._usable()]
        else:
            batches = self._evaluation_batches()
        mine = batches[self.rank :: self.world]
        if self.shuffle and self.resume_at and self.resume_at["epoch"] == self.epoch:
            mine = mine[self.resume_at["batches"] :]
            self.resume_at = None
        yield from mine


class SequenceDataModule(L.LightningDataModule):
    """The base of every seqlab data module: batch sizes, seeds, workers, and the checkpointed position.

    A subclass defines `loader(split, train)` for the splits "train", "val" and "test" (building its
    sampler with `self.resume_position()` for training, which a mid-epoch checkpoint set), and may keep
    more in checkpoints through `extra_state`/`load_extra_state`.
    """

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None = None,
        shuffle_seed: int | None = 0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        check_positive(batch_size=batch_size)
        if eval_batch_size is not None:
            check_positive(eval_batch_size=eval_batch_size)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.shuffle_seed, self.num_workers, self.pin_memory = shuffle_seed, num_workers, pin_memory
        self._resume_at: dict[str, int] | None = None  # from a mid-epoch checkpoint

    def loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError(f"{type(self).__name__} must define loader(split, train)")

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", train=False)

    def resume_position(self) -> dict[str, int] | None:
        """Where a mid-epoch checkpoint stopped (`{"epoch", "batches"}`), handed once to the training loader."""
        position, self._resume_at = self._resume_at, None
        return position

    def batch_sampler(self, make_batches: MakeBatches, train: bool) -> RankBatches:
        """This rank's batches from `make_batches`, shuffled from `shuffle_seed` + epoch when training."""
        resume_at = self.resume_position() if train else None
        return rank_batches(make_batches, train, self.shuffle_seed, self.trainer, resume_at)

    def data_loader(self, dataset: Any, **options: Any) -> DataLoader:
        """A DataLoader with this module's workers and pinning, and a generator of its own."""
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.pin_memory, self.trainer),
            generator=loader_generator(),
            persistent_workers=self.num_workers > 0,
            **options,
        )

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this module besides the training position (e.g. its vocabulary)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""

    def state_dict(self) -> dict[str, Any]:
        return self.extra_state() | train_position(self.trainer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_extra_state(state)
        self._resume_at = state.get("train_position")


class InMemoryDataModule(SequenceDataModule):
    """Subclass it with `dims` (what the model must know of the data, e.g. `{"input_dim": 1, "num_classes":
    2}`) and `make_splits()` (train, val and test datasets that take a list of indices, such as a
    `TensorDataset`); everything else comes from here.

    Batches are whole index lists (one `dataset[list]` a batch, no per-item collation); each epoch's order
    is drawn from `shuffle_seed + epoch`, the same on every DDP rank, which takes its own share; a checkpoint
    records how far the epoch got, so a run stopped mid-epoch resumes at the next batch with the same order.
    """

    # The three splits, made by `setup` (a subclass's constructor takes SequenceDataModule's arguments
    # and its own).
    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None

    @property
    def dims(self) -> dict[str, int]:
        """The keyword arguments a model needs from the data (`model.net` receives them)."""
        raise NotImplementedError(f"{type(self).__name__} must define the `dims` property")

    def make_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        """(train, val, test), each indexable by a list of indices."""
        raise NotImplementedError(f"{type(self).__name__} must define make_splits()")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.make_splits()

    def loader(self, split: str, train: bool) -> DataLoader:
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        size = self.batch_size if train else self.eval_batch_size
        # batch_size=None: the sampler yields whole index lists, one `dataset[list]` a batch
        return self.data_loader(
            dataset, sampler=self.batch_sampler(shuffled_batches(len(dataset), size), train), batch_size=None
        )
