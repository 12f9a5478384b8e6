"""The base of a data module whose three splits fit in memory: batching, DDP sharding and exact resume."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from seqlab.checks import check_positive
from seqlab.data.sharding import loader_generator, pin_memory, rank_batches, shuffled_batches, train_position


class InMemoryDataModule(L.LightningDataModule):
    """Subclass it with `dims` (what the model must know of the data, e.g. `{"input_dim": 1, "num_classes":
    2}`) and `make_splits()` (train, val and test datasets that take a list of indices, such as a
    `TensorDataset`); everything else comes from here.

    Batches are whole index lists (one `dataset[list]` a batch, no per-item collation); each epoch's order
    is drawn from `shuffle_seed + epoch`, the same on every DDP rank, which takes its own share; a checkpoint
    records how far the epoch got, so a run stopped mid-epoch resumes at the next batch with the same order.
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
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._resume_at: dict[str, int] | None = None  # from a mid-epoch checkpoint

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

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            dataset,
            sampler=rank_batches(
                shuffled_batches(len(dataset), size),
                shuffle,
                self.shuffle_seed,
                self.trainer,
                self._resume_at,
            ),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=pin_memory(self.pin_memory, self.trainer),
            generator=loader_generator(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def state_dict(self) -> dict:
        return train_position(self.trainer)

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = state.get("train_position")
