"""JANET (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the forget gate"): an LSTM
with only its forget gate. Written as a seqlab `Encoder` and registered as `janet` (pyproject.toml's `seqlab.encoders` entry point),
so `model.net.cell: janet` names it and its checkpoints restore by that name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab import Encoder, check_dropout, check_positive


class JANET(Encoder):
    """c_t = f_t * c_{t-1} + (1 - f_t) * tanh(W_c x_t + U_c c_{t-1} + b_c), f_t = sigmoid(W_f x_t + U_f
    c_{t-1} + b_f - beta); the output is c_t. The forget bias starts at chrono initialisation's values
    (log U(1, T_max - 1)), so the cell first remembers over about `t_max` steps."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        t_max: int = 20,
    ) -> None:
        super().__init__()
        check_positive(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers, t_max=t_max)
        check_dropout(dropout)
        if bidirectional:
            raise ValueError(
                "bidirectional=true is not supported by JANET; set model.net.bidirectional=false"
            )
        self.output_dim, self.num_layers, self.dropout = hidden_dim, num_layers, dropout
        self.inputs = nn.ModuleList(
            nn.Linear(input_dim if i == 0 else hidden_dim, 2 * hidden_dim) for i in range(num_layers)
        )
        self.recurrent = nn.ModuleList(
            nn.Linear(hidden_dim, 2 * hidden_dim, bias=False) for _ in range(num_layers)
        )
        with torch.no_grad():
            for layer in self.inputs:
                layer.bias[:hidden_dim] = torch.log(torch.empty(hidden_dim).uniform_(1, t_max - 1))
                layer.bias[hidden_dim:] = 0.0

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        batch, steps, _ = x.shape
        c_all = x.new_zeros(self.num_layers, batch, self.output_dim) if state is None else state
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = nn.functional.dropout(x, self.dropout, self.training)
            wx, c, outputs = self.inputs[layer](x), c_all[layer], []
            for t in range(steps):
                f, candidate = (wx[:, t] + self.recurrent[layer](c)).chunk(2, dim=-1)
                f = torch.sigmoid(f)
                new = f * c + (1 - f) * torch.tanh(candidate)
                c = new if mask is None else torch.where(mask[:, t, None], new, c)  # padding keeps c
                outputs.append(c)
            x = torch.stack(outputs, dim=1)
            finals.append(c)
        return x, torch.stack(finals)

    def pool_last(self, out: Tensor, state: Tensor, mask: Tensor | None) -> Tensor:
        return state[-1]  # padded steps kept c, so the final state is each row's last real one
