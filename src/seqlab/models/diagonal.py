"""The stack shared by the cells whose recurrence is elementwise (diagonal): IndRNN, the LRU, minGRU, minLSTM,
and the parallel scans of the linear recurrence h_t = a_t * h_{t-1} + b_t over dim 1 (batch-first time).

Each unit sees only its own past, h_t = f(a_t * h_{t-1} + b_t), so the linear ones (LRU, minGRU, minLSTM)
train with a parallel scan over time instead of a step loop; each cell's own file (indrnn.py, lru.py,
mingru.py) holds its layer, its settings and its registration. A step loop runs T dependent steps, each
too small to use a CPU's vector units or a GPU; the scans run 2 sqrt(T) steps over chunks of the sequence
(`linear_scan`) or cumulative ops over all of it at once (`log_linear_scan`, in log space, minGRU's,
Feng et al. 2024 appendix; Heinsen 2023, https://arxiv.org/abs/2311.06281). `linear_recurrence_loop` is
the reference both are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.errors import check_choice, check_dropout, check_positive
from seqlab.models.recurrent import align_right, undo_align, zero_padding
from seqlab.models.registry import Encoder

NEAR_ZERO_LOG = -1e30  # log of a term that is zero; finite, so no inf - inf reaches the gradients


def linear_recurrence_loop(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The reference: every h_t, one step at a time. a broadcasts against b (B, T, N); h0 (B, N)."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    # unbind, not a[:, t]: one backward node for all steps instead of a full-size zero gradient per step
    for a_t, b_t in zip(a.expand_as(b).unbind(1), b.unbind(1), strict=True):
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, chunk: int | None = None) -> Tensor:
    """Every h_t by a two-level scan: the sequence is cut into K chunks of C ~ sqrt(T) steps; all chunks
    run their C steps at once (from a zero state), then K steps carry each chunk's end into the next, and
    one product adds each carry to its chunk. 2 sqrt(T) dependent steps instead of T, O(T) work.

    Only products of `a` are formed, never quotients, so it is as stable as the loop, for real and
    complex values alike. `a` may be (1, T, N) when it is the same for every row (the LRU's lambda).
    """
    steps = b.size(1)
    size = chunk or max(1, round(math.sqrt(steps)))
    chunks = -(-steps // size)
    if chunks * size != steps:  # pad the end with a = 1, b = 0: the state runs on unchanged
        a = F.pad(a, (0, 0, 0, chunks * size - steps), value=1.0)
        b = F.pad(b, (0, 0, 0, chunks * size - steps))
    a_steps = a.reshape(a.size(0), chunks, size, -1).unbind(2)  # C tensors of (B or 1, K, N)
    b_steps = b.reshape(b.size(0), chunks, size, -1).unbind(2)  # C tensors of (B, K, N): step c of each chunk
    h, decay = b_steps[0], a_steps[0]  # within each chunk from a zero state; decay: the product of a so far
    local, decays = [h], [decay]
    for a_c, b_c in zip(a_steps[1:], b_steps[1:], strict=True):
        h, decay = a_c * h + b_c, decay * a_c
        local.append(h)
        decays.append(decay)
    carry = torch.zeros_like(b_steps[0][:, 0]) if h0 is None else h0  # (B, N): the state entering chunk 0
    carries = []  # K tensors of (B, N): the state entering each chunk
    for decay_k, end_k in zip(decays[-1].unbind(1), local[-1].unbind(1), strict=True):
        carries.append(carry)
        carry = decay_k * carry + end_k
    h = torch.stack(local, 2) + torch.stack(decays, 2) * torch.stack(carries, 1)[:, :, None]  # (B, K, C, N)
    return h.reshape(b.size(0), chunks * size, -1)[:, :steps]  # (B, T, N)


def log_linear_scan(log_a: Tensor, log_b: Tensor, log_h0: Tensor | None = None) -> Tensor:
    """log h_t for positive a_t, b_t (and h0), from logs, in two cumulative ops (Heinsen 2023):
    h_t = A_t (h0 + sum_{s<=t} b_s / A_s) with A_t = prod_{s<=t} a_s, computed as
    log A_t + logcumsumexp(log b_s - log A_s). Where A underflows its log does not."""
    log_a_star = log_a.cumsum(dim=1)  # (B, T, N): log A_t
    terms = log_b - log_a_star  # (B, T, N): log (b_s / A_s)
    if log_h0 is not None:
        terms = torch.cat([log_h0[:, None], terms], dim=1)
        log_a_star = torch.cat([torch.zeros_like(log_a_star[:, :1]), log_a_star], dim=1)
    log_h = log_a_star + terms.logcumsumexp(dim=1)
    return log_h if log_h0 is None else log_h[:, 1:]


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
        # x: (B, T, input_dim); mask: (B, T), True on real steps; state: (num_layers, B, N) or None
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
