"""The stack shared by the cells whose recurrence is elementwise (diagonal): IndRNN, the LRU, minGRU, minLSTM.

Each unit sees only its own past, h_t = f(a_t * h_{t-1} + b_t), so the linear ones (LRU, minGRU, minLSTM)
train with a parallel scan over time (seqlab.models.scan) instead of a step loop; each cell's own file
(indrnn.py, lru.py, mingru.py) holds its layer, its settings and its registration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.checks import check_choice, check_dropout, check_positive
from seqlab.models.base import Encoder
from seqlab.models.recurrent import align_right, undo_align, zero_padding

SCANS = ("chunked", "log", "loop")  # a two-level scan | minGRU's log-space scan | the step loop (reference)


def check_sizes(
    input_dim: int, hidden_dim: int, num_layers: int, dropout: float, bidirectional: bool
) -> None:
    check_positive(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers)
    check_dropout(dropout)
    if bidirectional:
        raise ValueError("bidirectional=true: the diagonal cells run forward only (a causal scan)")


def check_scan(scan: str, allowed: tuple[str, ...] = SCANS) -> None:
    check_choice("scan", scan, allowed)


class DiagonalRecurrentEncoder(Encoder):
    """Stacked diagonal layers, batch-first; forward(x, mask, state) -> (outputs, state).

    Each layer is called as `layer(x, h0, lengths) -> (outputs, final state)`. Padding is handled as the
    unidirectional fused cells handle it: rows are right-aligned, run causally and read at their true
    ends, so padding never reaches a real step's output or the final state. The state, (num_layers, B,
    state) (complex for the LRU), carries across calls (TBPTT windows). `project` maps the inputs first
    (the LRU's model works at `hidden_dim`); `dropout` acts between layers unless the layers drop inside.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        output_dim: int,
        dropout: float = 0.0,
        project: nn.Module | None = None,
        drop_between: bool = True,
    ) -> None:
        super().__init__()
        self.layers, self.output_dim, self.project = nn.ModuleList(layers), output_dim, project
        self.dropout = dropout if drop_between else 0.0

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):  # scans and complex values in float32
                return self.forward(x.float(), mask, state)
        lengths = shift = None
        if mask is not None:
            x, lengths, shift = align_right(x, mask)  # (B, T, D), real steps first
        if self.project is not None:
            x = self.project(x)
        finals = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, h = layer(x, None if state is None else state[i], lengths)  # (B, T, H), (B, N)
            finals.append(h)
        if lengths is not None:
            x = undo_align(zero_padding(x, lengths), shift)
        return x, torch.stack(finals)  # (B, T, H), (num_layers, B, N)
