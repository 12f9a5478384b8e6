"""Parallel scans of the linear recurrence h_t = a_t * h_{t-1} + b_t over dim 1 (batch-first time).

A step loop runs T dependent steps, each too small to use a CPU's vector units or a GPU; the scans run
2 sqrt(T) steps over chunks of the sequence (`linear_scan`) or cumulative ops over all of it at once
(`log_linear_scan`, in log space). `linear_recurrence_loop` is the reference both are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

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
    a_steps = a.reshape(a.size(0), chunks, size, -1).unbind(2)
    b_steps = b.reshape(b.size(0), chunks, size, -1).unbind(2)
    h, decay = b_steps[0], a_steps[0]
    local, decays = [h], [decay]
    for a_c, b_c in zip(a_steps[1:], b_steps[1:], strict=True):
        h, decay = a_c * h + b_c, decay * a_c
        local.append(h)
        decays.append(decay)
    carry = torch.zeros_like(b_steps[0][:, 0]) if h0 is None else h0
    carries = []
    for decay_k, end_k in zip(decays[-1].unbind(1), local[-1].unbind(1), strict=True):
        carries.append(carry)
        carry = decay_k * carry + end_k
    h = torch.stack(local, 2) + torch.stack(decays, 2) * torch.stack(carries, 1)[:, :, None]
    return h.reshape(b.size(0), chunks * size, -1)[:, :steps]


def log_linear_scan(log_a: Tensor, log_b: Tensor, log_h0: Tensor | None = None) -> Tensor:
    """log h_t for positive a_t, b_t (and h0), from logs, in two cumulative ops (Heinsen 2023):
    h_t = A_t (h0 + sum_{s<=t} b_s / A_s) with A_t = prod_{s<=t} a_s, computed as
    log A_t + logcumsumexp(log b_s - log A_s). Where A underflows its log does not."""
    log_a_star = log_a.cumsum(dim=1)
    terms = log_b - log_a_star
    if log_h0 is not None:
        terms = torch.cat([log_h0[:, None], terms], dim=1)
        log_a_star = torch.cat([torch.zeros_like(log_a_star[:, :1]), log_a_star], dim=1)
    log_h = log_a_star + terms.logcumsumexp(dim=1)
    return log_h if log_h0 is None else log_h[:, 1:]
