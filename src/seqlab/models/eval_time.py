"""Evaluation-time methods for a trained word-level language model: the neural cache (Grave et al. 2017,
https://arxiv.org/abs/1612.04426) and dynamic evaluation (Krause et al. 2018,
https://arxiv.org/abs/1709.07432). Both read a split as one stream, in order, the state carried from
token to token, as a model reading text would; both return summed negative log-likelihoods, so that
perplexity stays exact (exp of their mean over the stream's predicted tokens).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from seqlab.errors import ConfigError
from seqlab.models.language_model import LanguageModelNet, State, detach_state


def stream_chunks(net: LanguageModelNet, ids: Tensor, chunk: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The stream `ids` (N,) read in chunks of `chunk` inputs, the state carried: per chunk, the features
    the decoder reads (T, H), the log-probabilities of every word (T, V) and the targets (T,)."""
    state: State | None = None
    for start in range(0, len(ids) - 1, chunk):
        inputs = ids[start : start + chunk]
        targets = ids[start + 1 : start + 1 + chunk]
        inputs = inputs[: len(targets)]
        features, state = net.features(inputs[None], state)  # (1, T, H)
        features, scores = features[0], net.decode(features[0])
        yield features, scores if net.softmax == "adaptive" else scores.log_softmax(-1), targets


@torch.no_grad()
def cache_nll(
    net: LanguageModelNet,
    ids: Tensor,
    window: int,
    thetas: Sequence[float],
    lambdas: Sequence[float],
    chunk: int = 35,
) -> dict[tuple[float, float], float]:
    """Summed NLL of the stream under the neural cache, for every (theta, lambda) at once.

    p(w | h_t) = (1 - lambda) p_model(w | h_t) + lambda p_cache(w | h_t), with
    p_cache(w | h_t) proportional to sum_{i in the last `window` positions, x_{i+1} = w} exp(theta h_t . h_i):
    the features h_i the decoder read at earlier positions vote for the word that followed them. The first
    token, with nothing cached yet, is scored by the model alone.
    """
    net.eval()
    grid = list(itertools.product(thetas, lambdas))
    totals = dict.fromkeys(grid, 0.0)
    keys: Tensor | None = None  # the features of the last `window` positions (and this chunk's)
    followers = ids.new_zeros((0,))
    for features, log_probs, targets in stream_chunks(net, ids, chunk):
        steps = len(targets)
        keys = (features if keys is None else torch.cat([keys, features]))[-(window + steps) :]  # (P + T, H)
        followers = torch.cat([followers, targets])[-(window + steps) :]  # (P + T,): the word after each
        past = len(keys) - steps
        position = torch.arange(steps)[:, None] + past  # each query's own index among the keys
        index = torch.arange(len(keys))[None, :]
        allowed = (index < position) & (index >= position - window)  # (T, P + T)
        match = followers[None, :] == targets[:, None]  # keys that were followed by this target
        scores = features @ keys.T  # (T, P + T)
        p_model = log_probs.gather(1, targets[:, None]).squeeze(1).exp()
        has_cache = allowed.any(1)
        for theta, lam in grid:
            weights = (theta * scores).masked_fill(~allowed, float("-inf")).softmax(1).nan_to_num(0.0)
            p_cache = (weights * match).sum(1)
            mixed = torch.where(has_cache, (1 - lam) * p_model + lam * p_cache, p_model)
            totals[(theta, lam)] -= mixed.clamp_min(1e-30).log().sum().item()
    return totals


def dynamic_nll(net: LanguageModelNet, ids: Tensor, lr: float, decay: float, segment: int = 5) -> float:
    """Summed NLL of the stream under dynamic evaluation (the SGD rule with a decay to the trained weights).

    Each segment of `segment` tokens is scored with the weights as they are, then the weights take one
    step on that segment's mean loss: theta <- theta - lr * grad + decay * (theta_0 - theta), theta_0 the
    trained weights (Krause et al.'s section 4). The state is carried across segments (detached). The
    trained weights are put back at the end.
    """
    net.eval()  # no dropout: the updates follow the text, not noise
    params = [p for p in net.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    total, state = 0.0, None
    try:
        for start in range(0, len(ids) - 1, segment):
            targets = ids[start + 1 : start + 1 + segment]
            inputs = ids[start : start + len(targets)]
            nll, state = net.target_nll(inputs[None], targets[None], state)
            total += nll.item()
            grads = torch.autograd.grad(nll / len(targets), params, allow_unused=True)
            with torch.no_grad():
                for p, g, p0 in zip(params, grads, trained, strict=True):
                    step = decay * (p0 - p)
                    if g is not None:
                        step -= lr * g
                    p += step
            state = detach_state(state)
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, trained, strict=True):
                p.copy_(p0)
    return total


def perplexity(nll_sum: float, tokens: int) -> float:
    return math.exp(nll_sum / tokens)


CACHE = {"window": 500, "theta": [0.5, 1.0], "lambda": [0.05, 0.1, 0.2]}  # AWD-LSTM's PTB: 500, 1.0, 0.1
DYNAMIC = {"lr": [0.003, 0.01, 0.03], "decay": [0.0, 0.01], "segment": 5}


def settings(name: str, given: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        example = ", ".join(f"{k}: {v}" for k, v in defaults.items())
        raise ConfigError(f"{name}={given!r}: give its settings as a mapping, e.g. '{name}={{{example}}}'")
    unknown = [k for k in given if k not in defaults]
    if unknown:
        raise ConfigError(f"{name}: unknown key {unknown[0]}; its keys: {', '.join(defaults)}")
    values = defaults | dict(given)
    return {
        k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in values.items()
    }


def listed(values: Any) -> list[Any]:
    return values if isinstance(values, list) else [values]


def check(name: str, values: list[Any], ok: Callable[[float], bool], allowed: str) -> list[float]:
    """`values` as floats; the first that is not a number or fails `ok` is one line naming it."""
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(float(value)):
            raise ConfigError(f"{name}={value!r} must be {allowed}")
    return [float(v) for v in values]


def eval_time_metrics(
    net: LanguageModelNet,
    streams: Mapping[str, Tensor],
    cache: Mapping[str, Any] | None = None,
    dynamic: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """The cache's and dynamic evaluation's perplexities on the "val" and "test" streams, their settings
    chosen among those given (lists are searched) by the validation perplexity alone; and the static
    perplexity of the same streams read the same way (`<split>/ppl_stream`), the figure they improve on."""
    tokens = {split: len(ids) - 1 for split, ids in streams.items()}
    metrics: dict[str, float] = {}
    if cache is not None:
        s = settings("cache", cache, CACHE)
        window = int(
            check("cache.window", [s["window"]], lambda v: v >= 1 and v == int(v), "an integer >= 1")[0]
        )
        thetas = check("cache.theta", listed(s["theta"]), lambda v: v > 0, "> 0")
        lambdas = check("cache.lambda", listed(s["lambda"]), lambda v: 0 <= v <= 1, "in [0, 1]")
        on_val = cache_nll(net, streams["val"], window, thetas, [*lambdas, 0.0])
        theta, lam = min(((t, v) for t in thetas for v in lambdas), key=on_val.get)
        on_test = cache_nll(net, streams["test"], window, [theta], [lam, 0.0])
        metrics |= {"cache/window": window, "cache/theta": theta, "cache/lambda": lam}
        metrics |= {
            "val/ppl_stream": perplexity(on_val[(theta, 0.0)], tokens["val"]),
            "test/ppl_stream": perplexity(on_test[(theta, 0.0)], tokens["test"]),
            "val/ppl_cache": perplexity(on_val[(theta, lam)], tokens["val"]),
            "test/ppl_cache": perplexity(on_test[(theta, lam)], tokens["test"]),
        }
    if dynamic is not None:
        s = settings("dynamic_eval", dynamic, DYNAMIC)
        lrs, decays = listed(s["lr"]), listed(s["decay"])
        check("dynamic_eval.lr", lrs, lambda v: v > 0, "> 0")
        check("dynamic_eval.decay", decays, lambda v: 0 <= v < 1, "in [0, 1)")
        check(
            "dynamic_eval.segment", listed(s["segment"]), lambda v: v >= 1 and v == int(v), "an integer >= 1"
        )
        segment = int(listed(s["segment"])[0])
        on_val = {(lr, d): dynamic_nll(net, streams["val"], lr, d, segment) for lr in lrs for d in decays}
        lr, decay = min(on_val, key=on_val.get)
        metrics |= {"dynamic/lr": lr, "dynamic/decay": decay, "dynamic/segment": segment}
        metrics |= {
            "val/ppl_dynamic": perplexity(on_val[(lr, decay)], tokens["val"]),
            "test/ppl_dynamic": perplexity(
                dynamic_nll(net, streams["test"], lr, decay, segment), tokens["test"]
            ),
        }
    return metrics
