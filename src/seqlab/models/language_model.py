"""Word-level recurrent language model (pytorch/examples word_language_model, Zaremba et al. 2014)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.checks import check_choice, check_positive
from seqlab.models.encoder import build_encoder
from seqlab.models.recurrent import State

STRATEGIES = ("multinomial", "greedy", "top_k")


class LanguageModelNet(nn.Module):
    """embedding -> dropout -> recurrent encoder (dropout between layers) -> dropout -> linear decoder.

    Dropout sits on the non-recurrent connections only, as in Zaremba et al. `tie_weights` shares the
    embedding and decoder matrices (needs embed_dim == hidden_dim); `init_range` draws every weight from
    U(-init_range, init_range) as Zaremba did (recurrent cells only: it would flatten layer norms). With
    `cell: transformer` the encoder is causal and its state is a memory of the last `context` embedded
    tokens (`num_heads`, `positions` as in the encoder).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 200,
        hidden_dim: int = 200,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = False,
        init_range: float | None = None,
        num_heads: int = 4,
        positions: str = "sinusoidal",
        context: int | None = 128,
    ) -> None:
        super().__init__()
        check_positive(vocab_size=vocab_size, embed_dim=embed_dim)
        if tie_weights and embed_dim != hidden_dim:
            raise ValueError(f"tie_weights needs embed_dim == hidden_dim, got {embed_dim} and {hidden_dim}")
        self.drop = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = build_encoder(
            input_dim=embed_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            cell=cell,
            dropout=dropout,
            num_heads=num_heads,
            positions=positions,
            causal=True,
            context=context,
        )
        self.decoder = nn.Linear(hidden_dim, vocab_size)
        if cell == "transformer":
            # GPT-2's scale: N(0, 1) embeddings (PyTorch's default) swamp the positions and, when tied,
            # make the first logits ~16x too large next to the unit-variance layer-normed features.
            nn.init.normal_(self.embedding.weight, std=0.02)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> logits (B, T, vocab), final state."""
        out, state = self.encoder(self.drop(self.embedding(ids)), state=state)
        return self.decoder(self.drop(out)), state


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
