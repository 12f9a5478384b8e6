"""The text pipeline, on the `tokenizers` library: basic-English word tokens and a min_freq vocabulary.

Its vocabulary (`Vocabulary`) is plain data, a list of tokens, so checkpoints store it without pickling."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from seqlab.errors import DataError

UNK = "<unk>"
EOS = "<eos>"  # a sentence's end: PTB's line breaks, and where sampled text breaks lines


class Vocabulary:
    """Token <-> id. Unknown tokens map to `<unk>`, which is always present."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate tokens")
        if UNK not in self.stoi:
            raise ValueError(f"vocabulary lacks {UNK}")
        self.unk_id = self.stoi[UNK]

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        specials: Sequence[str] = (UNK,),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Specials first, then tokens by descending frequency (ties: first seen), keeping count >= min_freq."""
        counts = Counter(tokens)
        for special in specials:
            counts.pop(special, None)
        ranked = [t for t, c in counts.most_common() if c >= min_freq]
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls([*specials, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def state_dict(self) -> dict[str, list[str]]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(state["itos"])


log = logging.getLogger(__name__)
PAD = "<pad>"
LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1}
# A short English stop-word list (articles, pronouns, auxiliaries, prepositions); negations are kept.
_STOP_WORDS_TEXT = """
a an the and or but if of at by for with about to from in on into over under again further then once here
there when where why how all any both each few more most other some such own same so than too very i me my
myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were
be been being have has had having do does did doing would should could can will just s t
"""
STOP_WORDS = tuple(_STOP_WORDS_TEXT.split())


def normalizer(lowercase: bool = True, remove_stop_words: bool = False) -> normalizers.Normalizer:
    """Strip <br /> and the characters " ; : (as torchtext's basic_english does), lowercase, drop stop words."""
    steps = [normalizers.Replace(Regex(r'<br\s*/?>|[";:]'), " ")]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if remove_stop_words:
        words = "|".join(w for w in STOP_WORDS if "'" not in w)
        steps.append(normalizers.Replace(Regex(rf"\b({words})\b"), " "))
    return normalizers.Sequence(steps)


def make_tokenizer(
    vocab: Vocabulary | None = None,
    lowercase: bool = True,
    remove_stop_words: bool = False,
    max_length: int | None = None,
) -> Tokenizer:
    """Words split on whitespace, each punctuation mark a token of its own (it's -> it ' s)."""
    tokenizer = Tokenizer(WordLevel(vocab=dict(vocab.stoi) if vocab else {}, unk_token=UNK))
    tokenizer.normalizer = normalizer(lowercase, remove_stop_words)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    if max_length:
        tokenizer.enable_truncation(max_length)
    return tokenizer


def tokenize(text: str, lowercase: bool = True, remove_stop_words: bool = False) -> list[str]:
    """The words of one text, as the pipeline sees them (for tests and inspection)."""
    tokenizer = make_tokenizer(lowercase=lowercase, remove_stop_words=remove_stop_words)
    normalized = tokenizer.normalizer.normalize_str(text)
    return [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]


def build_vocab(
    texts: list[str],
    min_freq: int = 5,
    max_size: int | None = None,
    lowercase: bool = True,
    remove_stop_words: bool = False,
) -> Vocabulary:
    """Words with at least `min_freq` occurrences (the most frequent first), after `<pad>`=0 and `<unk>`=1."""
    tokenizer = make_tokenizer(lowercase=lowercase, remove_stop_words=remove_stop_words)
    trainer = WordLevelTrainer(
        vocab_size=max_size or 1 << 31, min_frequency=min_freq, special_tokens=[PAD, UNK], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    stoi = tokenizer.get_vocab()
    return Vocabulary(sorted(stoi, key=stoi.get))


def encode(
    texts: list[str],
    vocab: Vocabulary,
    lowercase: bool = True,
    remove_stop_words: bool = False,
    max_length: int | None = None,
) -> list[list[int]]:
    tokenizer = make_tokenizer(vocab, lowercase, remove_stop_words, max_length)
    return [e.ids for e in tokenizer.encode_batch(texts)]


NOT_TEXT_SHARE = 0.1  # invalid UTF-8 sequences or NUL bytes per byte above which a file is not text


def decode_utf8(raw: bytes, path: Path) -> str:
    """Strict UTF-8, or with a few bad bytes replaced, counted and reported in one warning. A file with
    more than 10% NUL bytes or invalid sequences (an image, an archive, UTF-16) is refused: read as text,
    it would become thousands of replacement characters and nonsense "reviews"."""
    nul = raw.count(0)
    try:
        text, bad = raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")
    if max(nul, bad) > NOT_TEXT_SHARE * max(len(raw), 1):
        raise DataError(
            f"{path} is not text: {bad} invalid UTF-8 sequence(s) and {nul} NUL byte(s) in {len(raw)} bytes; "
            "give a UTF-8 text or CSV file"
        )
    if bad:
        log.warning("%s: %d invalid UTF-8 byte sequence(s) replaced with U+FFFD", path, bad)
    return text


def parse_label(value: str, path: Path, line: int) -> int:
    label = LABELS.get(value.strip().lower())
    if label is None:
        raise DataError(f"{path}, line {line}: label {value!r} is not one of 0, 1, neg, pos")
    return label


def read_csv(path: Path, require_label: bool = True) -> tuple[list[str], list[int] | None]:
    """A `text,label` CSV (RFC 4180 quoting) -> texts, labels (None without a `label` column, where
    `require_label` is false)."""
    if not path.is_file():
        raise DataError(f"{path} not found")
    # strict: a quote closed inside a field (one review's unclosed quote swallowing the next rows) is an
    # error, not a merged review that keeps another's label
    reader = csv.DictReader(io.StringIO(decode_utf8(path.read_bytes(), path), newline=""), strict=True)
    columns = reader.fieldnames or []
    if "text" not in columns or (require_label and "label" not in columns):
        wanted = "text,label" if require_label else "text (and optionally label)"
        raise DataError(f"{path}: needs a header with columns {wanted}; found {reader.fieldnames}")
    texts: list[str] = []
    labels: list[int] | None = [] if "label" in columns else None
    start = reader.line_num + 1  # the line the row being read starts on
    try:
        for row in reader:
            texts.append(row["text"] or "")
            if labels is not None:
                labels.append(parse_label(row["label"] or "", path, reader.line_num))
            start = reader.line_num + 1
    except csv.Error as err:  # a broken quote (or a field over the csv module's size limit)
        rows = f"line {start}" if start == reader.line_num else f"the row starting on line {start}"
        raise DataError(
            f"{path}, {rows}: not valid CSV ({err}); a quote opened there is not closed before the next "
            'row: fix the quoting (a quote inside a field is written twice: "")'
        ) from None
    if not texts:
        raise DataError(f"{path} holds no reviews")
    return texts, labels


def read_folder(folder: Path) -> tuple[list[str], list[int]]:
    """An extracted aclImdb split: `pos/*.txt` and `neg/*.txt`, in file-name order."""
    texts, labels = [], []
    for name, label in (("neg", 0), ("pos", 1)):
        files = sorted((folder / name).glob("*.txt"))
        if not files:
            raise DataError(f"{folder / name} holds no .txt reviews")
        for file in files:
            texts.append(decode_utf8(file.read_bytes(), file))
            labels.append(label)
    return texts, labels


def _pair_keys(rows: list[list[int]], base: int) -> np.ndarray:
    """Every adjacent id pair (a, b) as the key a * base + b, row after row."""
    lengths = np.array([max(len(r) - 1, 0) for r in rows])
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    starts = np.cumsum([0] + [len(r) for r in rows])[:-1]
    first = (
        np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)]) if rows else flat
    )
    return flat[first] * base + flat[first + 1]


def add_bigram_vocab(vocab: Vocabulary, rows: list[list[int]], min_freq: int) -> Vocabulary:
    """The vocabulary plus every adjacent word pair seen `min_freq` times in `rows`, as "w1 w2" tokens."""
    keys = _pair_keys(rows, len(vocab))
    unique, counts = np.unique(keys, return_counts=True)
    kept = unique[counts >= min_freq][np.argsort(-counts[counts >= min_freq], kind="stable")]
    return Vocabulary(
        [*vocab.itos, *(f"{vocab.itos[k // len(vocab)]} {vocab.itos[k % len(vocab)]}" for k in kept)]
    )


def pair_ids(rows: list[list[int]], vocab: Vocabulary) -> list[np.ndarray]:
    """For each row, the vocabulary id of each adjacent word pair (w_t, w_t+1); 0 where it holds none."""
    if not rows:
        return []
    base = len(vocab)
    keys = _pair_keys(rows, base)
    ids = np.zeros(len(keys), dtype=np.int64)
    bigrams = [(i, token.split(" ")) for i, token in enumerate(vocab.itos) if " " in token]
    if bigrams:
        table_keys = np.array([vocab.stoi[a] * base + vocab.stoi[b] for _, (a, b) in bigrams], dtype=np.int64)
        order = np.argsort(table_keys)
        table_keys, table_ids = table_keys[order], np.array([i for i, _ in bigrams])[order]
        pos = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
        hit = table_keys[pos] == keys
        ids[hit] = table_ids[pos[hit]]
    return np.split(ids, np.cumsum([max(len(r) - 1, 0) for r in rows])[:-1])


def add_bigrams(rows: list[list[int]], vocab: Vocabulary) -> list[list[int]]:
    """Append to each row the ids of its word pairs that the vocabulary holds (a bag of n-grams)."""
    return [row + pairs[pairs > 0].tolist() for row, pairs in zip(rows, pair_ids(rows, vocab), strict=True)]


def align_bigrams(rows: list[list[int]], vocab: Vocabulary) -> list[np.ndarray]:
    """Each row as a (length, 2) array: its word ids and, beside each word, the id of the word pair it
    starts (0 where the vocabulary holds none, and after the last word): a region of two words a step."""
    return [
        np.stack([np.asarray(row, dtype=np.int64), np.append(pairs, 0)[: len(row)]], axis=1)
        for row, pairs in zip(rows, pair_ids(rows, vocab), strict=True)
    ]
