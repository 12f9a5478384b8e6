"""Batches split across DDP ranks by the data modules themselves (the trainer's `use_distributed_sampler` is off).

Every rank draws the same epoch order from `seed + epoch`, cuts it into per-device batches and takes
every `world`-th one, so global step k covers the same examples as batch k of a single process with
a `world` times larger batch, and the order never depends on the global random state (an exact resume).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch.utils.data import Sampler

from seqlab.compat import batches_done_in_epoch
from seqlab.errors import ConfigError

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
