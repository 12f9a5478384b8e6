"""The interface every sequence encoder offers the nets, seqlab's own and a user's (`model.net.cell`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Encoder(nn.Module):
    """A batch-first sequence encoder: `forward(x, mask=None, state=None) -> (outputs, state)`.

    `x` is (B, T, input_dim); `mask` (B, T), True on real steps, marks padding (None: no padding);
    `outputs` is (B, T, output_dim) and `state` whatever the encoder carries between calls (None is fine
    for a classifier). Subclasses set `output_dim` and may override `pool_last`, what `pooling: last` reads.
    """

    output_dim: int

    def forward(self, x: Tensor, mask: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, mask, state)")

    def pool_last(self, out: Tensor, state: Any, mask: Tensor | None) -> Tensor:
        """The output at each row's last real step."""
        if mask is None:
            return out[:, -1]
        last = (mask.cumsum(1) * mask).argmax(1)
        return out[torch.arange(out.size(0), device=out.device), last]
