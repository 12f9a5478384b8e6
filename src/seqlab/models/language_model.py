"""Word-level recurrent language model (pytorch/examples word_language_model; Zaremba et al. 2014, https://arxiv.org/abs/1409.2329)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.errors import check_choice, check_positive
from seqlab.models.recurrent import State
from seqlab.models.registry import build_encoder, cell_spec

STRATEGIES = ("multinomial", "greedy", "top_k")
SOFTMAXES = ("full", "adaptive")


class LanguageModelNet(nn.Module):
    """embedding -> dropout -> recurrent encoder (dropout between layers) -> dropout -> linear decoder.

    Dropout sits on the non-recurrent connections only, as in Zaremba et al. `tie_weights` shares the
    embedding and decoder matrices (needs embed_dim == hidden_dim); `init_range` draws every weight from
    U(-init_range, init_range) as Zaremba did (recurrent cells only: it would flatten layer norms). `cell`
    is any registered cell (a name or `{name: ..., <settings>}`) that carries a state; it is built causal,
    so `transformer`'s state is a memory of the last `context` embedded tokens (its setting).

    `softmax: adaptive` replaces the decoder by Grave et al.'s adaptive softmax (`cutoffs` split the
    vocabulary, most frequent ids first; each tail cluster sees the features through a projection
    `div_value` times smaller). It is a normalised distribution over the whole vocabulary, so perplexity
    stays exact; training pays only for the clusters its targets fall in (`target_nll`). With
    `tie_weights`, the input embedding is then the adaptive softmax's own output vectors (`TiedAdaptiveInput`,
    Baevski & Auli 2019's tied adaptive input): a head word reads its row of the head, a tail word its row
    of the cluster's matrix through the cluster's projection.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 200,
        hidden_dim: int = 200,
        num_layers: int = 2,
        cell: str | Mapping[str, Any] = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = False,
        init_range: float | None = None,
        softmax: str = "full",
        cutoffs: list[int] | tuple[int, ...] = (2000,),
        div_value: float = 4.0,
    ) -> None:
        super().__init__()
        check_positive(vocab_size=vocab_size, embed_dim=embed_dim)
        check_choice("softmax", softmax, SOFTMAXES)
        if tie_weights and embed_dim != hidden_dim:
            raise ValueError(f"tie_weights needs embed_dim == hidden_dim, got {embed_dim} and {hidden_dim}")
        self.drop = nn.Dropout(dropout)
        tied_adaptive = tie_weights and softmax == "adaptive"
        if not tied_adaptive:  # drawn first, as before the tied adaptive input: same seeds, same weights
            self.embedding: nn.Module = nn.Embedding(vocab_size, embed_dim)
        self.encoder = build_encoder(
            cell,
            input_dim=embed_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=False,
            causal=True,
        )
        self.softmax = softmax
        self.decoder = (
            adaptive_softmax(hidden_dim, vocab_size, list(cutoffs), div_value)
            if softmax == "adaptive"
            else nn.Linear(hidden_dim, vocab_size)
        )
        if tied_adaptive:
            self.embedding = TiedAdaptiveInput(self.decoder)
        if cell_spec(cell)[0] == "transformer" and not tied_adaptive:
            # GPT-2's scale: N(0, 1) embeddings (PyTorch's default) swamp the positions and, when tied,
            # make the first logits ~16x too large next to the unit-variance layer-normed features.
            nn.init.normal_(self.embedding.weight, std=0.02)
        if tie_weights and not tied_adaptive:
            self.decoder.weight = self.embedding.weight
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    def features(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> what the decoder reads (B, T, hidden), final state."""
        out, state = self.encoder(self.drop(self.embedding(ids)), state=state)
        return self.drop(out), state

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> logits (B, T, vocab), final state (adaptive: log-probabilities, valid logits)."""
        out, state = self.features(ids, state)
        return self.decode(out), state

    def decode(self, features: Tensor) -> Tensor:
        """features (..., hidden) -> logits (..., vocab); under the adaptive softmax, log-probabilities."""
        if self.softmax == "adaptive":
            return self.decoder.log_prob(features.flatten(0, -2)).view(*features.shape[:-1], -1)
        return self.decoder(features)

    def target_nll(self, ids: Tensor, targets: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Summed negative log-likelihood of `targets` (B, T) given `ids`, final state: the same value as
        cross-entropy of `forward`'s logits, without the full vocabulary's cost under the adaptive softmax."""
        out, state = self.features(ids, state)
        if self.softmax == "adaptive":
            with torch.autocast(out.device.type, enabled=False):  # its index_copy_ mixes float and bf16
                return -self.decoder(out.flatten(0, 1).float(), targets.flatten()).output.sum(), state
        return summed_nll(self.decoder(out), targets), state


class TiedAdaptiveInput(nn.Module):
    """Word vectors read from an adaptive softmax (no weights of their own): a head word's vector is its
    row of the head; word j of tail cluster i gets W1[j] @ W0, where the cluster scores features h as
    W1 (W0 h), so that every word's input vector is the vector its logit is taken against."""

    def __init__(self, softmax: nn.AdaptiveLogSoftmaxWithLoss) -> None:
        super().__init__()
        self._softmax = (softmax,)  # a reference, not a submodule: its weights belong to the decoder
        self.num_embeddings, self.embedding_dim = softmax.n_classes, softmax.in_features

    def forward(self, ids: Tensor) -> Tensor:
        """ids (...) -> vectors (..., dim)."""
        softmax, flat = self._softmax[0], ids.flatten()
        vectors = softmax.head.weight.new_zeros(flat.numel(), self.embedding_dim)
        bounds = [0, *softmax.cutoffs]
        for cluster, (low, high) in enumerate(zip(bounds, bounds[1:], strict=False)):
            where = ((flat >= low) & (flat < high)).nonzero().squeeze(1)
            if where.numel() == 0:
                continue
            local = flat[where] - low
            if cluster == 0:
                found = F.embedding(local, softmax.head.weight)
            else:
                projection, words = softmax.tail[cluster - 1]
                found = F.embedding(local, words.weight) @ projection.weight
            vectors = vectors.index_copy(0, where, found.to(vectors.dtype))  # bf16 autocast: matmul
        return vectors.view(*ids.shape, self.embedding_dim)

    @property
    def weight(self) -> Tensor:
        """Every word's vector (vocab, dim), as nn.Embedding's `weight` (the embeddings tool reads it)."""
        return self(torch.arange(self.num_embeddings, device=self._softmax[0].head.weight.device))


def summed_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of (B, T, vocab) logits against (B, T) targets, summed over every token."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")


def adaptive_softmax(
    dim: int, vocab_size: int, cutoffs: list[int], div_value: float
) -> nn.AdaptiveLogSoftmaxWithLoss:
    if not cutoffs or cutoffs != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab_size:
        raise ValueError(
            f"cutoffs={cutoffs} must increase strictly between 1 and the vocabulary size {vocab_size} "
            "(ids are ranked by frequency: e.g. [2000, 5000] for PTB's 10000 words)"
        )
    if div_value < 1:
        raise ValueError(
            f"div_value={div_value} must be at least 1 (each tail's projection is dim / div_value^i)"
        )
    if dim // div_value ** len(cutoffs) < 1:
        raise ValueError(
            f"div_value={div_value} leaves the last cluster no features ({dim} / {div_value}^{len(cutoffs)} < 1): "
            "use a smaller div_value or fewer cutoffs"
        )
    return nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, cutoffs, div_value=div_value)


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a chunk boundary: values flow on, gradients stop."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def move_state(state: State | None, device: torch.device | str) -> State | None:
    if state is None:
        return None
    return tuple(s.to(device) for s in state) if isinstance(state, tuple) else state.to(device)


def next_token(
    logits: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 40,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick the next id from (B, vocab) logits: argmax, a sample, or a sample among the top k."""
    check_choice("strategy", strategy, STRATEGIES)
    if strategy == "greedy":
        return logits.argmax(-1)
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    logits = logits / temperature
    if strategy == "top_k":
        check_positive(top_k=top_k)
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    net: LanguageModelNet,
    prompt: list[int],
    num_tokens: int,
    strategy: str = "multinomial",
    temperature: float = 1.0,
    top_k: int = 40,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `prompt` (ids) by `num_tokens` ids, feeding each choice back in."""
    if not prompt:
        raise ValueError("the prompt needs at least one token")
    device = next(net.parameters()).device
    logits, state = net(torch.tensor([prompt], device=device))
    out: list[int] = []
    for _ in range(num_tokens):
        token = next_token(logits[:, -1], strategy, temperature, top_k, generator)
        out.append(int(token))
        logits, state = net(token[:, None], state)
    return out
