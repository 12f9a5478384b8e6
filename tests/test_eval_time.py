"""The neural cache and dynamic evaluation against hand computations on a tiny language model, and their
options in `seqlab.eval` (chosen on validation, reported beside the static perplexity)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from seqlab import pipeline, restore
from seqlab.errors import ConfigError
from seqlab.models.eval_time import cache_nll, dynamic_nll
from seqlab.models.language_model import LanguageModelNet


@pytest.fixture
def net_and_stream():
    torch.manual_seed(0)
    net = LanguageModelNet(vocab_size=7, embed_dim=5, hidden_dim=4, num_layers=1).eval()
    stream = torch.randint(0, 7, (23,), generator=torch.Generator().manual_seed(1))
    return net, stream


def token_by_token(net, stream):
    """Every position's decoder features and next-word probabilities, one token at a time, state carried."""
    features, probs, state = [], [], None
    with torch.no_grad():
        for t in range(len(stream) - 1):
            h, state = net.features(stream[t : t + 1][None], state)
            features.append(h[0, 0])
            probs.append(net.decoder(h[0, 0]).softmax(-1))
    return features, probs


@pytest.mark.parametrize("chunk", [1, 3, 35])  # chunk boundaries inside the window, and none at all
def test_the_cache_mixes_the_models_and_the_caches_probability_as_by_hand(net_and_stream, chunk):
    net, stream = net_and_stream
    window, theta, lam = 4, 0.7, 0.3
    features, probs = token_by_token(net, stream)
    expected = 0.0
    for t in range(len(stream) - 1):
        target = int(stream[t + 1])
        earlier = range(max(0, t - window), t)
        if not earlier:
            expected -= math.log(probs[t][target])
            continue
        scores = torch.stack([theta * features[t] @ features[i] for i in earlier])
        weights = scores.softmax(0)
        p_cache = sum(float(w) for w, i in zip(weights, earlier, strict=True) if int(stream[i + 1]) == target)
        expected -= math.log((1 - lam) * float(probs[t][target]) + lam * p_cache)
    got = cache_nll(net, stream, window, [theta, 1.0], [0.0, lam], chunk=chunk)
    assert got[(theta, lam)] == pytest.approx(expected, rel=1e-5)
    static = -sum(math.log(probs[t][int(stream[t + 1])]) for t in range(len(stream) - 1))
    assert got[(1.0, 0.0)] == pytest.approx(static, rel=1e-5)  # lambda 0: the model alone


def test_dynamic_evaluation_scores_each_segment_then_steps_towards_it_and_back_to_the_trained_weights(
    net_and_stream,
):
    net, stream = net_and_stream
    lr, decay, segment = 0.5, 0.1, 4
    trained = copy.deepcopy(net.state_dict())
    by_hand = copy.deepcopy(net)
    params = list(by_hand.parameters())
    start_weights = [p.detach().clone() for p in params]
    expected, state = 0.0, None
    for start in range(0, len(stream) - 1, segment):
        targets = stream[start + 1 : start + 1 + segment]
        inputs = stream[start : start + len(targets)]
        logits, state = by_hand(inputs[None], state)
        nll = torch.nn.functional.cross_entropy(logits[0], targets, reduction="sum")
        expected += nll.item()
        by_hand.zero_grad()
        (nll / len(targets)).backward()
        with torch.no_grad():
            for p, p0 in zip(params, start_weights, strict=True):
                p.copy_(p - lr * p.grad + decay * (p0 - p))
        state = tuple(s.detach() for s in state)
    got = dynamic_nll(net, stream, lr, decay, segment)
    assert got == pytest.approx(expected, rel=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in trained.items())  # weights put back
    static = cache_nll(net, stream, 1, [1.0], [0.0])[(1.0, 0.0)]
    assert dynamic_nll(net, stream, lr=1e-12, decay=0.0, segment=segment) == pytest.approx(static, rel=1e-5)


_trained: dict[str, Path] = {}  # one tiny language model for this module's tests (eval never changes it)


def ptb_run(make_cfg, tmp_path) -> Path:
    if "ckpt" not in _trained:
        pipeline.train(make_cfg("experiment=ptb_lab", "debug=limit", output_dir=tmp_path / "lm"))
        _trained["ckpt"] = tmp_path / "lm" / "checkpoints" / "last.ckpt"
    return _trained["ckpt"]


@pytest.mark.slow
def test_eval_reports_the_cache_and_dynamic_evaluation_chosen_on_validation_beside_the_static_ppl(
    make_cfg, tmp_path
):
    ckpt = ptb_run(make_cfg, tmp_path)
    static = pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "splits=[val,test]", config_name="eval"))
    metrics = pipeline.evaluate(
        make_cfg(
            f"ckpt_path={ckpt}",
            "splits=[val,test]",
            "cache={window: 20, theta: [0.1, 1.0], lambda: [0.1, 0.3]}",
            "dynamic_eval={lr: [0.01, 0.1], decay: [0.0], segment: 5}",
            config_name="eval",
            output_dir=tmp_path / "options",
        )
    )
    assert metrics["test/ppl"] == pytest.approx(static["test/ppl"])  # the static figure stays as it was
    assert metrics["cache/theta"] in (0.1, 1.0) and metrics["cache/lambda"] in (0.1, 0.3)
    assert metrics["dynamic/lr"] in (0.01, 0.1) and metrics["dynamic/decay"] == 0.0
    for method in ("cache", "dynamic"):
        assert math.isfinite(metrics[f"val/ppl_{method}"]) and math.isfinite(metrics[f"test/ppl_{method}"])
    # the choice is the best validation perplexity of the grid, recomputed here for the cache
    _, datamodule, task = restore.restore_from_checkpoint(ckpt)
    datamodule.setup("test")
    val = datamodule.ids["val"]
    grid = cache_nll(task.net, val, 20, [0.1, 1.0], [0.1, 0.3])
    best = min(grid, key=grid.get)
    assert (metrics["cache/theta"], metrics["cache/lambda"]) == best
    assert metrics["val/ppl_cache"] == pytest.approx(math.exp(grid[best] / (len(val) - 1)))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("cache={window: 0, theta: [1.0], lambda: [0.1]}", r"cache.window=0 must be an integer >= 1"),
        ("cache={window: 10, theta: [1.0], lambda: [1.5]}", r"cache.lambda=1.5 must be in \[0, 1\]"),
        ("cache={window: 10, theta: [-1.0], lambda: [0.1]}", r"cache.theta=-1.0 must be > 0"),
        ("dynamic_eval={lr: [0.0], decay: [0.0]}", r"dynamic_eval.lr=0.0 must be > 0"),
        ("dynamic_eval={lr: [0.1], decay: [1.0]}", r"dynamic_eval.decay=1.0 must be in \[0, 1\)"),
        (
            "cache={window: 10, theta: [1.0], lamda: [0.1]}",
            r"cache: unknown key lamda; its keys: window, theta, lambda",
        ),
    ],
)
def test_bad_eval_time_settings_are_one_line(make_cfg, tmp_path, option, message):
    ckpt = ptb_run(make_cfg, tmp_path)
    with pytest.raises(ConfigError, match=message):
        pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "splits=[test]", option, config_name="eval"))


def test_the_cache_on_a_classifier_is_refused_in_one_line(make_cfg, tmp_path):
    cfg = make_cfg("experiment=mnist_rnn", "debug=limit", "data.val_size=40", output_dir=tmp_path / "mnist")
    pipeline.train(cfg)
    ckpt = tmp_path / "mnist" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"cache and dynamic_eval apply to word-level language models"):
        pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "cache={window: 5}", config_name="eval"))


def test_an_eval_time_option_that_is_not_a_mapping_is_one_line(make_cfg, tmp_path):
    ckpt = ptb_run(make_cfg, tmp_path)
    with pytest.raises(
        ConfigError, match=r"cache=5: give its settings as a mapping, e.g. 'cache=\{window: 500"
    ):
        pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "cache=5", config_name="eval"))
