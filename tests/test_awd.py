"""AWD-LSTM's parts: each one's semantics, the composed experiment, and NT-ASGD across a signal and resume."""

from __future__ import annotations

import random
import signal
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from seqlab import pipeline, restore
from seqlab.data.ptb import VariableWindows
from seqlab.models import AWDLanguageModelNet, LockedDropout, WeightDropLSTM
from seqlab.optimization import NTASGD
from seqlab.results import read_history
from seqlab.tasks import AWDLanguageModel
from tests.helpers import metrics_of, train_cli

TINY_AWD = [
    "experiment=ptb_awd",
    "data.batch_size=4",
    "data.eval_batch_size=3",
    "data.seq_len=6",
    "model.net.hidden_dim=16",
    "model.net.embed_dim=8",
    "model.net.num_layers=2",
    "optimizer_lr.ntasgd=1.0",
]


def test_locked_dropout_uses_one_mask_for_every_time_step():
    torch.manual_seed(0)
    drop = LockedDropout(0.5).train()
    out = drop(torch.ones(3, 7, 11))
    assert set(out.unique().tolist()) <= {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert (out == out[:, :1]).all(), "the same units are dropped at every step"
    assert not (out[0] == out[1]).all(), "each sequence draws its own mask"
    assert torch.equal(drop.eval()(out), out)


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    net = AWDLanguageModelNet(50, embed_dim=6, hidden_dim=8, num_layers=2, embedding_dropout=0.5,
                              input_dropout=0, hidden_dropout=0, dropout=0, weight_drop=0).train()  # fmt: skip
    ids = torch.tensor([[3, 5, 3, 7, 5, 3, 9, 9]])
    from seqlab.models.awd import embedding_dropout

    looked_up = embedding_dropout(net.embedding, ids, 0.5, training=True)[0]
    for word in ids[0].unique():
        rows = looked_up[ids[0] == word]
        plain = net.embedding.weight[word]
        assert torch.equal(rows[0], rows[-1]), "every occurrence of a word gets the same fate"
        assert torch.equal(rows[0], torch.zeros(6)) or torch.allclose(rows[0], plain * 2)
    assert torch.equal(embedding_dropout(net.embedding, ids, 0.5, training=False), net.embedding(ids))


def test_weight_drop_masks_the_recurrent_weights_once_per_window_and_leaves_the_module_whole():
    torch.manual_seed(0)
    layer = WeightDropLSTM(4, 5, weight_drop=0.5).train()
    raw = layer.lstm.weight_hh_l0.detach().clone()
    x = torch.randn(2, 9, 4)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no flattened-weights (or any) warning
        out, _ = layer(x, None)
    torch.manual_seed(1)
    masked = F.dropout(raw, 0.5, training=True)  # the one mask the forward drew, for all 9 steps
    expected, _ = functional_call(layer.lstm, {"weight_hh_l0": masked}, (x, None))
    torch.testing.assert_close(out, expected)
    assert torch.equal(layer.lstm.weight_hh_l0, raw), "the module's own weights are never replaced"
    out.sum().backward()
    assert layer.lstm.weight_hh_l0.grad is not None and (layer.lstm.weight_hh_l0.grad[masked == 0] == 0).all()
    torch.testing.assert_close(layer.eval()(x, None)[0], layer.lstm(x)[0])


def test_awd_net_has_per_layer_sizes_tied_weights_and_carries_its_state():
    net = AWDLanguageModelNet(30, embed_dim=6, hidden_dim=10, num_layers=3).eval()
    sizes = [(layer.lstm.input_size, layer.lstm.hidden_size) for layer in net.layers]
    assert sizes == [(6, 10), (10, 10), (10, 6)]
    assert net.decoder.weight is net.embedding.weight
    ids = torch.randint(30, (2, 8))
    whole, state = net(ids)
    first, carried = net(ids[:, :5])
    second, carried = net(ids[:, 5:], carried)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    assert all(torch.allclose(a, b) for a, b in zip(state, carried, strict=True))


def test_ar_and_tar_are_added_to_the_training_loss():
    torch.manual_seed(0)
    net = AWDLanguageModelNet(20, embed_dim=4, hidden_dim=6, num_layers=2)
    task = AWDLanguageModel(net, ar_alpha=2.0, tar_beta=1.0).train()
    ids, targets = torch.randint(20, (3, 7)), torch.randint(20, (3, 7))
    torch.manual_seed(5)
    logits, _ = task.forward_chunk(ids, None)
    loss, nll_sum = task.chunk_loss(logits, targets)
    torch.manual_seed(5)
    logits2, _, (raw, dropped) = net(ids, None, with_activations=True)
    ce = F.cross_entropy(logits2.flatten(0, 1), targets.flatten())
    expected = ce + 2.0 * dropped.pow(2).mean() + 1.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll_sum, ce * targets.numel())


def test_ntasgd_triggers_non_monotonically_and_averages_the_iterates_since():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = NTASGD([weight], lr=0.1, nonmono=2)
    # the trigger: a loss worse than the best of all but the last 2
    assert [optimizer.observe(v) for v in (5.0, 4.0, 3.0, 3.5, 3.2)] == [False] * 5
    assert optimizer.observe(5.5) and optimizer.averaging and not optimizer.observe(9.0)
    iterates = []
    for step in range(4):
        weight.grad = torch.full((3,), float(step + 1))
        optimizer.step()
        iterates.append(weight.detach().clone())
    average = torch.stack(iterates).mean(0)
    torch.testing.assert_close(optimizer.state[weight]["average"], average)
    last = weight.detach().clone()
    optimizer.swap_average()
    torch.testing.assert_close(weight.detach(), average)
    optimizer.swap_average()
    torch.testing.assert_close(weight.detach(), last)


def test_ntasgd_state_round_trips_through_its_state_dict():
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = NTASGD([weight], lr=0.5, start_at=1)
    assert optimizer.observe(1.0)  # start_at=1: from the first validation on
    weight.grad = torch.ones(2)
    optimizer.step()
    copy = NTASGD([torch.nn.Parameter(torch.ones(2))], lr=0.5)
    copy.load_state_dict(optimizer.state_dict())
    assert copy.averaging and copy.param_groups[0]["val_history"] == [1.0]


def test_a_config_naming_ntasgd_by_its_former_path_still_builds_it():
    """Run dirs written before NT-ASGD joined seqlab.optimization name it `seqlab.tasks.NTASGD`."""
    from hydra.utils import instantiate

    factory = instantiate({"_target_": "seqlab.tasks.NTASGD", "_partial_": True, "lr": 0.5})
    assert isinstance(factory(params=[torch.nn.Parameter(torch.ones(2))]), NTASGD)


def test_variable_windows_cover_the_stream_with_lengths_around_the_mean_the_same_every_run():
    sampler = VariableWindows(n=100, tokens=3500, mean=35, seed=0)
    windows = sampler.windows()
    assert len(windows) == 100 and windows[0][0] == 0
    assert (
        all(a + n == b for (a, n), (b, _) in zip(windows, windows[1:], strict=False))
        and sum(n for _, n in windows) == 3500
    )
    lengths = torch.tensor([n for _, n in windows], dtype=torch.float)
    assert 30 < lengths.mean() < 40 and lengths.std() > 2 and lengths.min() >= 4
    assert windows == VariableWindows(n=100, tokens=3500, mean=35, seed=0).windows()
    sampler.set_epoch(1)
    assert sampler.windows() != windows, "each epoch draws its own lengths"


def test_ptb_awd_composes_and_runs_fast_dev_run(make_cfg):
    value, metrics = pipeline.train(make_cfg(*TINY_AWD, "debug=fdr"))
    assert value == metrics["val/ppl"] and metrics["test/ppl"] > 1


@pytest.mark.slow
def test_ntasgd_survives_a_signal_mid_epoch_and_resumes_exactly(tmp_path, data_dir, monkeypatch):
    """Averaging from the first validation on; SIGTERM inside epoch 1 (averaging under way, windows of
    variable length); the resumed run ends with the metrics of one never interrupted."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    overrides = [
        *TINY_AWD,
        "optimizer.start_at=1",
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        "seed=3",
    ]
    assert train_cli(overrides, tmp_path / "straight", data_dir).returncode == 0
    straight = metrics_of(tmp_path / "straight")
    batch = random.Random(0).randrange(1, 5)
    stop = ["+callbacks.stop._target_=tests.helpers.SignalAt", "+callbacks.stop.epoch=1",
            f"+callbacks.stop.batch={batch}", f"+callbacks.stop.signum={int(signal.SIGTERM)}"]  # fmt: skip
    run_dir = tmp_path / "signalled"
    signalled = train_cli([*overrides, *stop], run_dir, data_dir)
    assert signalled.returncode == 1, signalled.stderr[-3000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["triggered_at"] == 0, "averaging had started"
    resumed = train_cli([*overrides, "resume=true"], run_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    picked = {k: v for k, v in straight.items() if k.startswith(("val/", "test/"))}
    assert {k: metrics_of(run_dir)[k] for k in picked} == pytest.approx(picked, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_validation_checkpoints_and_test_use_the_averaged_weights_once_nt_asgd_averages(make_cfg, tmp_path):
    """From the first validation on (start_at=0) epoch 1 averages: its validation, its checkpoint's
    weights and the final test read the averages; the iterates training goes on from are kept beside."""
    from seqlab.tasks.awd import RAW_WEIGHTS

    cfg = make_cfg(*TINY_AWD, "optimizer.start_at=0", "debug=limit", output_dir=tmp_path / "run")
    _, metrics = pipeline.train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    states = checkpoint["optimizer_states"][0]["state"]
    _, _, task = restore.restore_from_checkpoint(last)
    names = [name for name, _ in task.named_parameters()]  # the optimizer's order
    averaged = [(i, name) for i, name in enumerate(names) if "average" in states.get(i, {})]
    assert len(averaged) == len(names), "NT-ASGD averages every weight from epoch 1 on"
    for index, name in averaged:
        assert torch.equal(checkpoint["state_dict"][name], states[index]["average"])
    assert any(not torch.equal(checkpoint["state_dict"][n], checkpoint[RAW_WEIGHTS][n]) for _, n in averaged)
    iterates = dict(checkpoint, state_dict=checkpoint["state_dict"] | checkpoint[RAW_WEIGHTS])
    torch.save(iterates, tmp_path / "iterates.ckpt")
    limits = ["++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2"]  # as debug=limit ran them

    def scored(path: Path) -> dict[str, float]:
        eval_cfg = make_cfg(
            f"ckpt_path={path}",
            "splits=[val,test]",
            *limits,
            config_name="eval",
            output_dir=tmp_path / path.stem,
        )
        return pipeline.evaluate(eval_cfg)

    on_averages, on_iterates = scored(last), scored(tmp_path / "iterates.ckpt")
    logged = read_history(tmp_path / "run" / "history.csv")[-1]["val/loss"]
    # epoch 1's validation read the averages, not the iterates, and so did the final test
    assert abs(logged - on_averages["val/loss"]) < abs(logged - on_iterates["val/loss"])
    test = metrics["test/loss"]
    assert abs(test - on_averages["test/loss"]) < abs(test - on_iterates["test/loss"])
