"""Models that read a sequence and answer with a head: a class for it (`SequenceClassifierNet`), a value
for it (`SequenceRegressorNet`), a class at every step (`StepClassifierNet`), all an encoder over the
sequence, pooling and a linear head (`SequenceNet`); and the bag of words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.errors import check_choice, check_dropout, check_positive
from seqlab.models.awd import embedding_dropout
from seqlab.models.registry import build_encoder

POOLINGS = ("last", "mean", "max", "none")


class SequenceNet(nn.Module):
    """(optional embedding) -> encoder (any registered `cell`) -> pooling -> linear head.

    Reads feature sequences (`input_dim`, e.g. MNIST rows) or token ids (`vocab_size` + `embed_dim`):
    (B, T), or (B, T, K) with K ids a step (a word and the word pair it starts) whose embeddings add up.
    Pooling over time: `last` (the final state, at each row's true end), or masked `mean` / `max`;
    `none` gives every step its own output, (B, T, num_classes).
    The mask may lie on the host while the inputs are on a GPU.
    `cell` is a registered cell's name or `{name: <cell>, <its settings>}` (seqlab.models.registry);
    `hidden_dim`, `num_layers`, `dropout`, `bidirectional` size it. `dropout` acts between stacked
    layers; `embed_dropout` drops whole words (rows of the embedding), `input_dropout` acts on the
    encoder's inputs (the embeddings) and `output_dropout` on the pooled features: these regularize
    one-layer models too.
    `segment_length` reads a sequence as independent segments of that many steps (the state starts afresh
    in each; Johnson & Zhang 2016's LSTMs read IMDB reviews in 50-token segments), pooled over the whole
    sequence (`mean` or `max`): the encoder runs fewer steps in a row over a larger batch (the same work:
    a training step of imdb_bilstm_best took 0.99 s in 50-token segments against 1.11 s on a 2-core CPU).
    """

    def __init__(
        self,
        num_classes: int,
        input_dim: int | None = None,
        vocab_size: int | None = None,
        embed_dim: int | None = None,
        pad_id: int = 0,
        cell: str | Mapping[str, Any] = "lstm",
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        embed_dropout: float = 0.0,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "last",
        segment_length: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        if segment_length is not None:
            check_positive(segment_length=segment_length)
            if pooling not in ("mean", "max"):
                raise ValueError(
                    f"segment_length={segment_length} needs pooling: max or mean over the segments' steps "
                    f"(pooling={pooling!r} would read only one segment's end); set one or segment_length=null"
                )
        check_positive(num_classes=num_classes)
        check_dropout(embed_dropout, "embed_dropout")
        check_dropout(input_dropout, "input_dropout")
        check_dropout(output_dropout, "output_dropout")
        if vocab_size is not None:
            check_positive(vocab_size=vocab_size, embed_dim=embed_dim)
            self.embedding: nn.Module | None = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
            input_dim = embed_dim
        elif input_dim is None:
            raise ValueError(
                "give either input_dim (feature sequences) or vocab_size and embed_dim (token ids)"
            )
        else:
            self.embedding = None
        self.pooling, self.embed_dropout, self.segment_length = pooling, embed_dropout, segment_length
        self.encoder = build_encoder(
            cell,
            input_dim=input_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        self.input_drop = nn.Dropout(input_dropout)
        self.output_drop = nn.Dropout(output_dropout)
        self.head = nn.Linear(self.encoder.output_dim, num_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.embedding is not None:
            x = embedding_dropout(self.embedding, x, self.embed_dropout, self.training)
            if x.dim() == 4:  # several ids a step: their embeddings add up
                x = x.sum(2)
        if self.segment_length is not None:
            out, mask = self.read_segments(self.input_drop(x), mask)
            state = None
        else:
            out, state = self.encoder(self.input_drop(x), mask)
        if mask is not None:
            mask = mask.to(out.device, non_blocking=True)  # it may come from the host
        if self.pooling == "none":
            return self.head(self.output_drop(out))
        if self.pooling == "last":
            pooled = self.encoder.pool_last(out, state, mask)
        elif mask is None:
            pooled = out.mean(1) if self.pooling == "mean" else out.amax(1)
        elif self.pooling == "mean":
            pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            pooled = out.masked_fill(~mask[..., None], float("-inf")).amax(1).nan_to_num(neginf=0.0)
        return self.head(self.output_drop(pooled))

    def read_segments(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, T, D) inputs -> (B, T', H) encoder outputs and their (B, T') mask, T' = T rounded up to whole
        segments: each segment encoded on its own (the state starts afresh), all-padding ones skipped."""
        batch, steps, length = x.shape[0], x.shape[1], self.segment_length
        pad = -steps % length
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=x.device)
        mask = F.pad(mask.to(x.device, non_blocking=True), (0, pad), value=False).reshape(-1, length)
        x = F.pad(x, (0, 0, 0, pad)).reshape(-1, length, x.shape[-1])
        read = mask.any(1)
        encoded, _ = self.encoder(x[read], mask[read])
        out = encoded.new_zeros(x.shape[0], length, encoded.shape[-1])
        out[read] = encoded
        return out.reshape(batch, -1, out.shape[-1]), mask.reshape(batch, -1)


class SequenceClassifierNet(SequenceNet):
    """A class for a sequence: `num_classes` logits from the pooled encoder features (see `SequenceNet`)."""


class SequenceRegressorNet(SequenceNet):
    """A value for a sequence (the adding problem): `num_classes` outputs (1 by default), no activation."""

    def __init__(self, num_classes: int = 1, **settings: Any) -> None:
        super().__init__(num_classes, **settings)


class StepClassifierNet(SequenceNet):
    """A class at every step (copy memory): (B, T, num_classes) logits, one per step, no pooling."""

    def __init__(self, num_classes: int, pooling: str = "none", **settings: Any) -> None:
        if pooling != "none":
            raise ValueError(f"pooling={pooling!r}: a step classifier answers at every step (pooling: none)")
        super().__init__(num_classes, pooling="none", **settings)


class BagOfEmbeddings(nn.Module):
    """The mean of a text's word embeddings -> linear head: a fast, strong baseline.

    The ids are one-hot word indices over the vocabulary, with `<unk>` the extra category for unknown
    words; padding (`pad_id`) is left out of the mean.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 64,
        pad_id: int | None = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive(vocab_size=vocab_size, num_classes=num_classes, embed_dim=embed_dim)
        check_dropout(dropout)
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)

    def sentence_vectors(self, ids: Tensor) -> Tensor:
        """(B, T) word ids -> (B, embed_dim): the mean of each text's word embeddings (padding left out)."""
        return self.embedding(ids.flatten(1))  # aligned word pairs (B, T, 2) join the bag too

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.sentence_vectors(ids)))
