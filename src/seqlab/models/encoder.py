"""The encoder choices (`cell`): the recurrent cells and self-attention, behind one interface."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from seqlab.checks import check_choice
from seqlab.models.base import Encoder
from seqlab.models.diagonal import DIAGONAL_CELLS, DiagonalRecurrentEncoder
from seqlab.models.recurrent import CELLS, RecurrentEncoder
from seqlab.models.transformer import SelfAttentionEncoder

ENCODERS = (*CELLS, *DIAGONAL_CELLS, "transformer")


def build_encoder(
    input_dim: int,
    hidden_dim: int,
    num_layers: int,
    cell: str | Callable[..., Encoder],
    dropout: float = 0.0,
    bidirectional: bool = False,
    pack: bool = True,
    num_heads: int = 4,
    positions: str = "sinusoidal",
    causal: bool = False,
    context: int | None = None,
) -> nn.Module:
    """forward(x, mask, state) -> (outputs, state); `output_dim`; `pool_last(outputs, state, mask)`.

    `num_heads`, `positions`, `causal` and `context` apply to `transformer` only; `bidirectional` and
    `pack` to the recurrent cells only (`bidirectional` not to the diagonal ones: indrnn, lru, mingru,
    minlstm).

    `cell` may also be a callable (a user's `Encoder` class, given in the config as `_target_` with
    `_partial_: true`), called with `input_dim`, `hidden_dim`, `num_layers`, `dropout` and `bidirectional`.
    """
    if callable(cell):
        encoder = cell(
            input_dim=input_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        if not isinstance(encoder, Encoder):
            raise ValueError(f"cell={cell!r} built a {type(encoder).__name__}, not a seqlab.models.Encoder")
        return encoder
    check_choice("cell", cell, ENCODERS)
    if cell in DIAGONAL_CELLS:
        if bidirectional:
            raise ValueError(
                f"bidirectional=true applies to {', '.join(CELLS)}; cell={cell} runs forward only"
            )
        return DiagonalRecurrentEncoder(input_dim, hidden_dim, num_layers, cell=cell, dropout=dropout)
    if cell != "transformer":
        return RecurrentEncoder(
            input_dim,
            hidden_dim,
            num_layers,
            cell=cell,
            dropout=dropout,
            bidirectional=bidirectional,
            pack=pack,
        )
    if bidirectional:
        raise ValueError("bidirectional=true does not apply to cell=transformer: attention sees both sides")
    return SelfAttentionEncoder(
        input_dim,
        hidden_dim,
        num_layers,
        num_heads=num_heads,
        dropout=dropout,
        positions=positions,
        causal=causal,
        context=context,
    )
