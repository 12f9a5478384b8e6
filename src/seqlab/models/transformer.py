"""Self-attention encoder (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762) with the recurrent
encoder's interface, so LSTMs and attention share a sweep."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqlab.errors import check_choice, check_dropout, check_positive
from seqlab.models.registry import Encoder, register_encoder

POSITIONS = ("sinusoidal", "learned", "none")


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Vaswani et al.: sin on even features, cos on odd ones, wavelengths from 2*pi to 10000*2*pi."""
    position = torch.arange(length, dtype=torch.float)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class PositionwiseFeedForward(nn.Module):
    """The same two-layer MLP at every position (what a kernel-size-1 convolution computes)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttentionBlock(nn.Module):
    """Pre-norm: x + attention(LN(x)), then x + feed-forward(LN(x))."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ff = PositionwiseFeedForward(dim, 4 * dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None, padding: Tensor | None) -> Tensor:
        h = self.ln1(x)
        h = self.attn(h, h, h, attn_mask=attn_mask, key_padding_mask=padding, need_weights=False)[0]
        x = x + self.drop(h)
        return x + self.drop(self.ff(self.ln2(x)))


class SelfAttentionEncoder(Encoder):
    """input projection -> positions -> `num_layers` self-attention blocks -> layer norm; batch-first.

    forward(x, mask, state) -> (outputs, state), as `RecurrentEncoder`. `causal` lets each step see only
    itself and earlier steps (the language model). The state is a memory of the last `context` inputs:
    a chunk attends to them as well as to itself, so truncated BPTT and step-by-step generation see
    across chunk boundaries (null: no memory). Without positions (`positions: none`) the encoder is
    permutation-equivariant.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.0,
        positions: str = "sinusoidal",
        causal: bool = False,
        context: int | None = None,
        max_len: int = 1024,
    ) -> None:
        super().__init__()
        check_positive(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers, num_heads=num_heads)
        check_choice("positions", positions, POSITIONS)
        check_dropout(dropout)
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be a multiple of num_heads={num_heads}")
        if context is not None:
            check_positive(context=context)
        self.hidden_dim, self.causal, self.context, self.max_len = hidden_dim, causal, context, max_len
        self.inp = nn.Linear(input_dim, hidden_dim) if input_dim != hidden_dim else nn.Identity()
        self.positions = positions
        if positions == "learned":
            self.pos = nn.Embedding(max_len, hidden_dim)
        elif positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(max_len, hidden_dim), persistent=False)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(hidden_dim)
        self.drop = nn.Dropout(dropout)

    @property
    def output_dim(self) -> int:
        return self.hidden_dim

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        past = 0 if state is None else state.size(1)
        full = x if state is None else torch.cat([state, x], dim=1)
        length = full.size(1)
        if length > self.max_len:
            raise ValueError(f"sequence of {length} steps is longer than max_len={self.max_len}")
        h = self.inp(full)
        if self.positions == "learned":
            h = h + self.pos(torch.arange(length, device=x.device))
        elif self.positions == "sinusoidal":
            h = h + self.pos_table[:length]
        h = self.drop(h)
        attn_mask = None
        if self.causal:
            attn_mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        padding = None
        if mask is not None:
            mask = mask.to(x.device, non_blocking=True)  # it may come from the host
            padding = ~torch.cat([mask.new_ones(mask.size(0), past), mask], dim=1)
            padding[:, 0] &= padding.all(1).logical_not()  # an all-padding row attends to its first step
        for block in self.blocks:
            h = block(h, attn_mask, padding)
        out = self.ln(h)[:, past:]
        if mask is not None:
            out = out * mask[..., None]
        new_state = full[:, -self.context :] if self.context else None
        return out, new_state


@register_encoder("transformer")
def transformer(
    input_dim: int,
    hidden_dim: int = 128,
    num_layers: int = 2,
    dropout: float = 0.0,
    bidirectional: bool = False,
    causal: bool = False,
    num_heads: int = 4,
    positions: str = "sinusoidal",
    context: int | None = None,
) -> SelfAttentionEncoder:
    """Pre-norm self-attention (Vaswani et al. 2017). `num_heads` (hidden_dim a multiple of it);
    `positions`: sinusoidal | learned | none; `context`: earlier inputs a chunk attends to (a language
    model's memory across TBPTT windows; null: none). Causal when the net asks (language models)."""
    if bidirectional:
        raise ValueError("bidirectional=true does not apply to cell=transformer: attention sees both sides")
    return SelfAttentionEncoder(
        input_dim, hidden_dim, num_layers, num_heads, dropout, positions, causal=causal, context=context
    )
