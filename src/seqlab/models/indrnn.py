"""IndRNN (Li et al. 2018, https://arxiv.org/abs/1803.04831): independently recurrent ReLU units."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.models.diagonal import DiagonalRecurrentEncoder, check_sizes
from seqlab.models.recurrent import at_true_end
from seqlab.models.registry import register_encoder

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class IndRNNLayer(nn.Module):
    """h_t = act(W x_t + u * h_{t-1} + b), each unit its own recurrent weight u
    (https://arxiv.org/abs/1803.04831, eq. 2; the bound on |u|: section 3.1).

    |u| is bounded by 2^(1/T) for a sequence (or TBPTT window) of T steps, the paper's constraint that
    keeps a ReLU unit's gradient over T steps from exploding; u starts uniform in [recurrent_min,
    recurrent_max] (the paper: [0, 1], so some units keep long memories).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        recurrent_min: float = 0.0,
        recurrent_max: float = 1.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.input = nn.Linear(input_dim, hidden_dim)
        self.recurrent_weight = nn.Parameter(torch.empty(hidden_dim).uniform_(recurrent_min, recurrent_max))
        self.activation = ACTIVATIONS[activation]

    def optimizer_settings(self) -> dict[str, dict[str, object]]:
        return {"recurrent_weight": {"decay": False}}  # the paper decays W only

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        wx = self.input(x)  # (B, T, H)
        bound = 2.0 ** (1.0 / x.size(1))
        if self.training:  # the paper's projection after each update, done before the next use
            with torch.no_grad():
                self.recurrent_weight.clamp_(-bound, bound)
        u = self.recurrent_weight.clamp(-bound, bound)  # a longer sequence than trained on: its own bound
        h = wx.new_zeros(wx.shape[0], wx.shape[2]) if h0 is None else h0  # (B, H)
        states = []
        for wx_t in wx.unbind(1):  # one backward node for all steps (see linear_recurrence_loop)
            h = self.activation(wx_t + u * h)
            states.append(h)
        hs = torch.stack(states, dim=1)
        return hs, at_true_end(hs, lengths)


@register_encoder("indrnn")
def indrnn(
    input_dim: int,
    hidden_dim: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    recurrent_min: float = 0.0,
    recurrent_max: float = 1.0,
    activation: str = "relu",
) -> DiagonalRecurrentEncoder:
    """`recurrent_min`, `recurrent_max`: the range u starts in; `activation`: relu (the paper's) | tanh."""
    check_sizes(input_dim, hidden_dim, num_layers, dropout, bidirectional)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if not -2.0 <= recurrent_min <= recurrent_max <= 2.0:
        raise ValueError(
            f"recurrent_min={recurrent_min}, recurrent_max={recurrent_max}: need -2 <= min <= max <= 2 "
            "(|u| is clipped to 2^(1/T) anyway)"
        )
    layers = [
        IndRNNLayer(input_dim if i == 0 else hidden_dim, hidden_dim, recurrent_min, recurrent_max, activation)
        for i in range(num_layers)
    ]
    return DiagonalRecurrentEncoder(layers, hidden_dim, dropout)
