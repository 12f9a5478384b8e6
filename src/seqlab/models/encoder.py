"""The encoder choices (`cell`): the recurrent cells and self-attention, behind one interface."""

from __future__ import annotations

from torch import nn

from seqlab.checks import check_choice
from seqlab.models.recurrent import CELLS, RecurrentEncoder
from seqlab.models.transformer import SelfAttentionEncoder

ENCODERS = (*CELLS, "transformer")


def build_encoder(
    input_dim: int,
    hidden_dim: int,
    num_layers: int,
    cell: str,
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
    `pack` to the recurrent cells only.
    """
    check_choice("cell", cell, ENCODERS)
    if cell != "transformer":
        return RecurrentEncoder(input_dim, hidden_dim, num_layers, cell, dropout, bidirectional, pack)
    if bidirectional:
        raise ValueError("bidirectional=true does not apply to cell=transformer: attention sees both sides")
    return SelfAttentionEncoder(
        input_dim, hidden_dim, num_layers, num_heads, dropout, positions, causal, context
    )
