"""MNIST read as a sequence: rows (28 x 28), pixels (784 x 1) or a fixed permutation of the pixels."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from seqlab.data.base import InMemoryDataModule
from seqlab.data.files import VERIFY, DataError, ensure_files, verify_files
from seqlab.errors import ConfigError, check_choice, check_positive

VIEWS = ("rows", "pixels", "permuted_pixels")
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MEAN, STD = 0.1307, 0.3081  # over the 60k training images


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or gzipped) of unsigned bytes; refuse anything malformed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: cannot read ({err}); the file is corrupt, delete it and fetch it again"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes (magic number {raw[:4].hex() or 'missing'})"
        )
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_idx(folder: Path, name: str) -> Path:
    """`name.gz` or the plain `name`, whichever exists."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder / name}[.gz] not found")


def load_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    if labels.max(initial=0) > 9:
        raise DataError(f"{folder}: {prefix} labels hold {labels.max()}, MNIST labels are 0..9")
    return images, labels


def to_sequences(images: np.ndarray, view: str, permutation: torch.Tensor | None) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float sequences (N, T, F) for the chosen view."""
    return pixels_to_inputs(torch.from_numpy(images.copy()).float().div_(255.0), view, permutation)


def pixels_to_inputs(pixels: torch.Tensor, view: str, permutation: torch.Tensor | None) -> torch.Tensor:
    """Images (N, 28, 28) in [0, 1] -> what the model reads: normalised sequences in the view's order."""
    x = (pixels - MEAN) / STD
    if view == "rows":
        return x.contiguous()
    x = x.reshape(len(x), 784, 1)
    return x[:, permutation].contiguous() if view == "permuted_pixels" else x


def inputs_to_pixels(x: torch.Tensor, view: str, permutation: torch.Tensor | None) -> torch.Tensor:
    """The inverse of `pixels_to_inputs`: model inputs -> images (N, 28, 28) in pixel units."""
    if view == "permuted_pixels":
        x = x[:, torch.argsort(permutation)]
    return (x.reshape(len(x), 28, 28) * STD + MEAN).contiguous()


class MNISTDataModule(InMemoryDataModule):
    """Sequential MNIST from `<data_dir>/MNIST/raw/`.

    Validation is a seeded random `val_size` of the 60k training images; the rest, in their original
    order, is the training set, optionally cut to its first `train_subset` images.
    """

    def __init__(
        self,
        data_dir: str,
        view: str = "rows",
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        val_size: int = 5000,
        train_subset: int | None = None,
        split_seed: int = 0,
        permutation_seed: int = 0,
        shuffle_seed: int | None = 0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        verify: str = "warn",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed, num_workers, pin_memory)
        check_choice("view", view, VIEWS)
        check_choice("verify", verify, VERIFY)
        self.verify = verify
        check_positive(val_size=val_size)
        if train_subset is not None:
            check_positive(train_subset=train_subset)
        self.raw_dir = Path(data_dir) / "MNIST" / "raw"
        self.view, self.val_size = view, val_size
        self.train_subset, self.split_seed, self.permutation_seed = train_subset, split_seed, permutation_seed

    @property
    def dims(self) -> dict[str, int]:
        """What a model needs to know of the data."""
        return {"input_dim": 28 if self.view == "rows" else 1, "num_classes": 10}

    @property
    def permutation(self) -> torch.Tensor | None:
        if self.view != "permuted_pixels":
            return None
        return torch.randperm(784, generator=torch.Generator().manual_seed(self.permutation_seed))

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images (N, 28, 28) in [0, 1] -> model inputs for this module's view."""
        return pixels_to_inputs(pixels, self.view, self.permutation)

    def pixels(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model inputs -> images (N, 28, 28) in [0, 1]."""
        return inputs_to_pixels(inputs, self.view, self.permutation)

    def prepare_data(self) -> None:
        ensure_files(self.raw_dir, FILES, MIRRORS, "MNIST", alternatives=(".gz",))
        verify_files(self.raw_dir, FILES, "MNIST", self.verify)

    def make_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        images, labels = load_split(self.raw_dir, "train")
        if self.val_size >= len(images):
            raise ConfigError(
                f"data.val_size={self.val_size} must be smaller than the {len(images)} training images"
            )
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed)).numpy()
        val_idx, train_idx = np.sort(order[: self.val_size]), np.sort(order[self.val_size :])
        train_idx = train_idx[: self.train_subset]
        test_images, test_labels = load_split(self.raw_dir, "t10k")
        perm = self.permutation

        def dataset(imgs: np.ndarray, labs: np.ndarray) -> TensorDataset:
            return TensorDataset(to_sequences(imgs, self.view, perm), torch.from_numpy(labs.astype(np.int64)))

        return (
            dataset(images[train_idx], labels[train_idx]),
            dataset(images[val_idx], labels[val_idx]),
            dataset(test_images, test_labels),
        )
