"""Cells whose recurrence is elementwise (diagonal): IndRNN, the LRU, minGRU and minLSTM.

Each unit sees only its own past, h_t = f(a_t * h_{t-1} + b_t), so the LRU, minGRU and minLSTM (linear in
h) train with a parallel scan over time (seqlab.models.scan) instead of a step loop. `scan` picks how:
`chunked` (the default, a two-level scan), `log` (minGRU/minLSTM: the paper's log-space scan) or `loop`
(step by step: the reference the scans are tested against). IndRNN's ReLU makes it a loop, but a loop of
elementwise steps, without the LSTM's matrix product per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.checks import check_choice, check_dropout, check_positive
from seqlab.models.base import Encoder
from seqlab.models.recurrent import align_right, at_true_end, undo_align, zero_padding
from seqlab.models.scan import NEAR_ZERO_LOG, linear_recurrence_loop, linear_scan, log_linear_scan

DIAGONAL_CELLS = ("indrnn", "lru", "mingru", "minlstm")
SCANS = ("chunked", "log", "loop")


class IndRNNLayer(nn.Module):
    """h_t = relu(W x_t + u * h_{t-1} + b) (Li et al. 2018), each unit its own recurrent weight u.

    |u| is bounded by 2^(1/T) for a sequence (or TBPTT window) of T steps, the paper's constraint that
    keeps a ReLU unit's gradient over T steps from exploding; u starts uniform in [0, 1], so some units
    keep long memories.
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.input = nn.Linear(input_dim, hidden_dim)
        self.recurrent_weight = nn.Parameter(torch.rand(hidden_dim))

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        wx = self.input(x)
        bound = 2.0 ** (1.0 / x.size(1))
        if self.training:  # the paper's projection after each update, done before the next use
            with torch.no_grad():
                self.recurrent_weight.clamp_(-bound, bound)
        u = self.recurrent_weight.clamp(-bound, bound)  # a longer sequence than trained on: its own bound
        h = wx.new_zeros(wx.shape[0], wx.shape[2]) if h0 is None else h0
        states = []
        for wx_t in wx.unbind(1):  # one backward node for all steps (see linear_recurrence_loop)
            h = torch.relu(wx_t + u * h)
            states.append(h)
        hs = torch.stack(states, dim=1)
        return hs, at_true_end(hs, lengths)


class LRULayer(nn.Module):
    """The linear recurrent unit (Orvieto et al. 2023): h_t = lambda * h_{t-1} + gamma * (B x_t),
    y_t = Re(C h_t) + D * x_t, with a complex diagonal lambda = exp(-exp(nu) + i exp(theta)) (|lambda| < 1
    whatever nu is), lambda drawn uniformly on the ring r_min <= |lambda| <= r_max, phases up to
    `max_phase`, and gamma = sqrt(1 - |lambda|^2) so that every state starts with the input's scale."""

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
        if scan == "log":
            raise ValueError("scan=log needs positive states (mingru, minlstm); the LRU's are complex")
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

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        lam = torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))
        # Real matrix products on the real and imaginary parts: a complex one costs 4x on a CPU.
        gamma = torch.exp(self.gamma_log)
        bx = torch.complex(x @ (self.B_re * gamma[:, None]).T, x @ (self.B_im * gamma[:, None]).T)
        hs = self.scan(lam.expand(1, x.size(1), -1), bx, h0)
        y = torch.cat([hs.real, hs.imag], -1) @ torch.cat([self.C_re, -self.C_im], 1).T + self.D * x
        return y, at_true_end(hs, lengths)


class LRUBlock(nn.Module):
    """The paper's layer around the recurrence: x + dropout(GLU(dropout(GELU(LRU(LayerNorm(x))))))."""

    def __init__(self, dim: int, dropout: float, scan: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.lru = LRULayer(dim, dim, scan=scan)
        self.glu = nn.Linear(dim, 2 * dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        y, h = self.lru(self.norm(x), h0, lengths)
        return x + self.drop(F.glu(self.glu(self.drop(F.gelu(y))))), h


def g(x: Tensor) -> Tensor:
    """minGRU's positive stand-in for tanh: x + 1/2 for x >= 0, else sigmoid(x)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), without forming g(x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class MinGRULayer(nn.Module):
    """minGRU (Feng et al. 2024): z_t = sigmoid(W_z x_t), h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t).

    The gates read x only, never h, so every coefficient is known before the scan. The paper scans in
    log space (`scan=log`, h stays positive) because its cumulative form divides by products of a that
    underflow; the chunked scan never divides, so it runs in linear space, and on a CPU 5x faster (torch's
    CPU logcumsumexp is the slow part). `minlstm=True`: minLSTM, forget and input gates summing to one.
    """

    def __init__(self, input_dim: int, hidden_dim: int, minlstm: bool = False, scan: str = "chunked") -> None:
        super().__init__()
        self.minlstm, self.scan = minlstm, scan
        self.input = nn.Linear(input_dim, (3 if minlstm else 2) * hidden_dim)

    def coefficients(self, x: Tensor, log: bool) -> tuple[Tensor, Tensor]:
        """a_t and b_t of h_t = a_t h_{t-1} + b_t (their logs with `log`)."""
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


class DiagonalRecurrentEncoder(Encoder):
    """`indrnn | lru | mingru | minlstm`, stacked, batch-first; forward(x, mask, state) -> (outputs, state).

    Padding is handled as the unidirectional fused cells handle it: rows are right-aligned, run causally,
    and read at their true ends, so padding never reaches a real step's output or the final state. The
    state, (num_layers, B, state) (complex for the LRU), carries across calls (TBPTT windows). The LRU
    model first projects the inputs to `hidden_dim`, as in the paper. One direction only.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 1,
        cell: str = "lru",
        dropout: float = 0.0,
        scan: str = "chunked",
    ) -> None:
        super().__init__()
        check_choice("cell", cell, DIAGONAL_CELLS)
        check_choice("scan", scan, SCANS)
        check_positive(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        check_dropout(dropout)
        self.cell, self.output_dim, self.dropout = cell, hidden_dim, dropout
        self.project = nn.Linear(input_dim, hidden_dim) if cell == "lru" else None
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            in_dim = input_dim if layer == 0 and cell != "lru" else hidden_dim
            if cell == "indrnn":
                self.layers.append(IndRNNLayer(in_dim, hidden_dim))
            elif cell == "lru":
                self.layers.append(LRUBlock(hidden_dim, dropout, scan))
            else:
                self.layers.append(MinGRULayer(in_dim, hidden_dim, cell == "minlstm", scan))

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):  # scans and complex values in float32
                return self.forward(x.float(), mask, state)
        lengths = shift = None
        if mask is not None:
            x, lengths, shift = align_right(x, mask)
        if self.project is not None:
            x = self.project(x)
        finals = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0 and self.cell != "lru":  # the LRU block drops inside
                x = F.dropout(x, self.dropout, self.training)
            x, h = layer(x, None if state is None else state[i], lengths)
            finals.append(h)
        if lengths is not None:
            x = undo_align(zero_padding(x, lengths), shift)
        return x, torch.stack(finals)
