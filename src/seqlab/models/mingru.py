"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs all we needed?", https://arxiv.org/abs/2410.01201)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.models.diagonal import (
    NEAR_ZERO_LOG,
    DiagonalRecurrentEncoder,
    check_scan,
    check_sizes,
    linear_recurrence_loop,
    linear_scan,
    log_linear_scan,
)
from seqlab.models.recurrent import at_true_end
from seqlab.models.registry import register_encoder


def g(x: Tensor) -> Tensor:
    """minGRU's positive stand-in for tanh: x + 1/2 for x >= 0, else sigmoid(x)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), without forming g(x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class MinGRULayer(nn.Module):
    """minGRU: z_t = sigmoid(W_z x_t), h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t)
    (https://arxiv.org/abs/2410.01201, section 3.1 and appendix B; minLSTM: section 3.2).

    The gates read x only, never h, so every coefficient is known before the scan. The paper scans in
    log space (`scan=log`, h stays positive) because its cumulative form divides by products of a that
    underflow; the chunked scan never divides, so it runs in linear space, and on a CPU 5x faster (torch's
    CPU logcumsumexp is the slow part). `minlstm=True`: minLSTM, forget and input gates summing to one.
    `forget_bias` starts the keep fraction near sigmoid(forget_bias): at 0 a unit's memory halves every step.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        minlstm: bool = False,
        scan: str = "chunked",
        forget_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.minlstm, self.scan = minlstm, scan
        self.input = nn.Linear(input_dim, (3 if minlstm else 2) * hidden_dim)
        with torch.no_grad():  # the first chunk is the keep side: minGRU's -z logit, minLSTM's forget gate
            self.input.bias[:hidden_dim] += forget_bias if minlstm else -forget_bias

    def coefficients(self, x: Tensor, log: bool) -> tuple[Tensor, Tensor]:
        """a_t and b_t of h_t = a_t h_{t-1} + b_t (their logs with `log`), each (B, T, H)."""
        if self.minlstm:
            k_f, k_i, pre = self.input(x).chunk(3, dim=-1)
            if log:
                log_f, log_i = -F.softplus(-k_f), -F.softplus(-k_i)
                total = torch.logaddexp(log_f, log_i)
                return log_f - total, log_i - total + log_g(pre)
            f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
            keep = f / (f + i)
            return keep, (1 - keep) * g(pre)
        k, pre = self.input(x).chunk(2, dim=-1)
        if log:
            return -F.softplus(k), -F.softplus(-k) + log_g(pre)
        keep = torch.sigmoid(-k)  # 1 - z
        return keep, (1 - keep) * g(pre)

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.scan == "log":
            log_a, log_b = self.coefficients(x, log=True)
            log_h0 = None if h0 is None else torch.log(h0).clamp(min=NEAR_ZERO_LOG)
            hs = log_linear_scan(log_a, log_b, log_h0).exp()
        else:
            scan = linear_scan if self.scan == "chunked" else linear_recurrence_loop
            hs = scan(*self.coefficients(x, log=False), h0)
        return hs, at_true_end(hs, lengths)


def builder(minlstm: bool):
    """minGRU's (or minLSTM's) builder: `scan`: chunked | log (the paper's) | loop; `forget_bias`: the
    keep side's initial bias."""

    def build(
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        scan: str = "chunked",
        forget_bias: float = 0.0,
    ) -> DiagonalRecurrentEncoder:
        check_sizes(input_dim, hidden_dim, num_layers, dropout, bidirectional)
        check_scan(scan)
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        layers = [MinGRULayer(d, hidden_dim, minlstm, scan, float(forget_bias)) for d in dims]
        return DiagonalRecurrentEncoder(layers, hidden_dim, dropout)

    return build


register_encoder("mingru", builder(minlstm=False))
register_encoder("minlstm", builder(minlstm=True))
