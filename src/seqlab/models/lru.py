"""The linear recurrent unit (Orvieto et al. 2023, https://arxiv.org/abs/2303.06349), in the paper's block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.models.diagonal import (
    DiagonalRecurrentEncoder,
    check_scan,
    check_sizes,
    linear_recurrence_loop,
    linear_scan,
)
from seqlab.models.recurrent import at_true_end
from seqlab.models.registry import register_encoder

RECURRENT_LR_SCALE = 0.5  # the reference implementations train nu, theta, gamma at half the rate


class LRULayer(nn.Module):
    """h_t = lambda * h_{t-1} + gamma * (B x_t), y_t = Re(C h_t) + D * x_t (https://arxiv.org/abs/2303.06349,
    eq. 6-8), with a
    complex diagonal lambda = exp(-exp(nu) + i exp(theta)) (|lambda| < 1 whatever nu is), drawn uniformly
    on the ring r_min <= |lambda| <= r_max with phases up to `max_phase`, and gamma = sqrt(1 - |lambda|^2)
    so that every state starts with the input's scale."""

    def __init__(
        self,
        dim: int,
        state_dim: int,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = math.pi / 10,
        scan: str = "chunked",
    ) -> None:
        super().__init__()
        self.scan = linear_scan if scan == "chunked" else linear_recurrence_loop
        u1, u2 = torch.rand(state_dim), torch.rand(state_dim)
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        modulus = torch.exp(-torch.exp(self.nu_log.detach()))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        self.B_re = nn.Parameter(torch.randn(state_dim, dim) / math.sqrt(2 * dim))
        self.B_im = nn.Parameter(torch.randn(state_dim, dim) / math.sqrt(2 * dim))
        self.C_re = nn.Parameter(torch.randn(dim, state_dim) / math.sqrt(state_dim))
        self.C_im = nn.Parameter(torch.randn(dim, state_dim) / math.sqrt(state_dim))
        self.D = nn.Parameter(torch.randn(dim))

    def optimizer_settings(self) -> dict[str, dict[str, object]]:
        """No weight decay on the recurrence, and a smaller rate (the paper's appendix, its code)."""
        recurrent = {"decay": False, "lr_scale": RECURRENT_LR_SCALE}
        return {"nu_log": recurrent, "theta_log": recurrent, "gamma_log": recurrent}

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        lam = torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))  # (N,)
        # Real matrix products on the real and imaginary parts: a complex one costs 4x on a CPU.
        gamma = torch.exp(self.gamma_log)
        bx = torch.complex(
            x @ (self.B_re * gamma[:, None]).T, x @ (self.B_im * gamma[:, None]).T
        )  # (B, T, N)
        hs = self.scan(lam.expand(1, x.size(1), -1), bx, h0)  # (B, T, N) complex
        y = (
            torch.cat([hs.real, hs.imag], -1) @ torch.cat([self.C_re, -self.C_im], 1).T + self.D * x
        )  # (B, T, H)
        return y, at_true_end(hs, lengths)


class LRUBlock(nn.Module):
    """The paper's layer around the recurrence: x + dropout(GLU(dropout(GELU(LRU(LayerNorm(x))))))."""

    def __init__(self, dim: int, dropout: float, **lru: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.lru = LRULayer(dim, dim, **lru)
        self.glu = nn.Linear(dim, 2 * dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        y, h = self.lru(self.norm(x), h0, lengths)
        return x + self.drop(F.glu(self.glu(self.drop(F.gelu(y))))), h


@register_encoder("lru")
def lru(
    input_dim: int,
    hidden_dim: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    r_min: float = 0.9,
    r_max: float = 0.999,
    max_phase: float = math.pi / 10,
    scan: str = "chunked",
) -> DiagonalRecurrentEncoder:
    """`r_min`, `r_max`: the ring |lambda| starts on (0 <= r_min < r_max < 1; long memories need r_max
    near 1); `max_phase`: the largest initial phase (radians, > 0); `scan`: chunked | loop. The inputs
    are first projected to `hidden_dim`; dropout acts inside each block."""
    check_sizes(input_dim, hidden_dim, num_layers, dropout, bidirectional)
    check_scan(scan, ("chunked", "loop"))
    if not 0.0 <= r_min < r_max < 1.0:
        raise ValueError(
            f"r_min={r_min}, r_max={r_max}: need 0 <= r_min < r_max < 1 (|lambda| < 1 keeps it stable)"
        )
    if not 0.0 < max_phase <= 2 * math.pi:
        raise ValueError(f"max_phase={max_phase}: need 0 < max_phase <= 2 pi")
    settings = {"r_min": r_min, "r_max": r_max, "max_phase": max_phase, "scan": scan}
    layers = [LRUBlock(hidden_dim, dropout, **settings) for _ in range(num_layers)]
    return DiagonalRecurrentEncoder(
        layers, hidden_dim, dropout, project=nn.Linear(input_dim, hidden_dim), drop_between=False
    )
