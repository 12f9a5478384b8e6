"""Penn Treebank language model: streams, truncated BPTT, exact perplexity, sampling, tools."""

import math
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from seqlab import build, pipeline
from seqlab.callbacks import GradNormMonitor
from seqlab.data import DataError, PTBDataModule, Vocabulary
from seqlab.data.ptb import batchify, read_words
from seqlab.data.text import EOS
from seqlab.errors import ConfigError
from seqlab.models import LanguageModelNet, generate
from seqlab.optimization import Optimization
from seqlab.tasks import LanguageModel
from seqlab.tools.embeddings import distances, nearest
from seqlab.tools.embeddings import report_embeddings as embeddings
from seqlab.tools.sample import sample_from_checkpoint as sample
from seqlab.tools.sample import sample_text
from tests.conftest import make_ptb
from tests.helpers import EXPERIMENTS

PTB_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("ptb")]
TINY = ["data.batch_size=4", "data.eval_batch_size=3", "data.seq_len=6", "model.truncated_bptt_steps=3"]


def ptb_dm(data_dir, **kwargs) -> PTBDataModule:
    dm = PTBDataModule(str(data_dir), **({"batch_size": 4, "seq_len": 5, "eval_batch_size": 3} | kwargs))
    dm.prepare_data()
    dm.setup()
    return dm


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**(defaults | kwargs))


def test_words_eos_and_unknowns(data_dir):
    words = read_words(data_dir / "ptb/ptb.test.txt")
    assert words[-4:] == ["the", "zebra", "sat", EOS]
    dm = ptb_dm(data_dir)
    assert dm.vocab.itos[:2] == ["<unk>", EOS] and "zebra" not in dm.vocab
    assert dm.ids["test"][-3].item() == dm.vocab.unk_id  # unseen in training -> <unk>, no crash
    assert dm.dims == {"vocab_size": len(dm.vocab)} == {"vocab_size": 15}


def test_windows_are_contiguous_streams_in_order(data_dir):
    dm = ptb_dm(data_dir)
    streams = batchify(dm.ids["train"], 4)
    assert torch.equal(
        streams.flatten(), dm.ids["train"][: streams.numel()]
    )  # row r is one contiguous stretch
    batches = list(dm.train_dataloader())
    assert all(x.shape[0] == 4 for x, _ in batches) and batches[0][0].shape == (4, 5)
    xs = torch.cat([x for x, _ in batches], 1)
    ys = torch.cat([y for _, y in batches], 1)
    assert torch.equal(xs, streams[:, :-1]) and torch.equal(ys, streams[:, 1:])
    for (_, y_prev), (x_next, _) in zip(batches, batches[1:], strict=False):
        assert torch.equal(x_next[:, 0], y_prev[:, -1])  # batch i+1 continues where batch i stopped


def test_hidden_state_flows_across_batches_and_resets_each_epoch(data_dir):
    dm = ptb_dm(data_dir)
    net = LanguageModelNet(len(dm.vocab), 8, 8, 1)
    task = LanguageModel(
        net,
        truncated_bptt_steps=None,
        optimization=Optimization(optimizer=lambda params: torch.optim.SGD(params, lr=0.0)),
    )
    seen = []

    def record(module, args, kwargs, output):  # the encoder: the state each batch starts from and ends with
        state = kwargs.get("state")
        seen.append(
            (None if state is None else [s.clone() for s in state], [s.detach().clone() for s in output[1]])
        )

    net.encoder.register_forward_hook(record, with_kwargs=True)
    quiet_trainer(max_epochs=2).fit(task, dm)
    per_epoch = len(dm.train_dataloader())
    assert len(seen) == 2 * per_epoch
    for epoch in range(2):
        first = epoch * per_epoch
        assert seen[first][0] is None  # reset at each epoch start
        for i in range(first + 1, first + per_epoch):
            torch.testing.assert_close(seen[i][0], seen[i - 1][1])  # the previous batch's final state


@pytest.mark.parametrize("k,expected", [(3, [0, 1]), (2, [0, 1, 2]), (None, [0])])
def test_no_gradient_crosses_a_truncation(k, expected):
    """Gradient hooks on each chunk's embeddings: a chunk's backward never reaches an earlier chunk."""
    torch.manual_seed(0)
    net = LanguageModelNet(10, 4, 4, 1)
    task = LanguageModel(
        net,
        truncated_bptt_steps=k,
        optimization=Optimization(optimizer=lambda params: torch.optim.SGD(params, lr=0.1)),
    )
    fired, calls = [], []

    def hook(module, args, output):
        index = len(calls)
        calls.append(index)
        output.register_hook(lambda grad: fired.append(index))

    net.embedding.register_forward_hook(hook)
    x = torch.randint(0, 10, (2, 6))
    quiet_trainer(max_epochs=1).fit(task, DataLoader([(x, x)], batch_size=None))
    assert fired == expected


def test_perplexity_is_exact_over_the_whole_stream(data_dir):
    dm = ptb_dm(data_dir, seq_len=4, eval_batch_size=3)
    torch.manual_seed(0)
    net = LanguageModelNet(len(dm.vocab), 8, 8, 2)
    task = LanguageModel(net)
    got = quiet_trainer(limit_val_batches=None).validate(task, dm, verbose=False)[0]
    streams = batchify(dm.ids["val"], 3)
    with torch.no_grad():
        logits, _ = net(streams[:, :-1])  # the whole stream in one pass: no windows, nothing to carry
        nll = F.cross_entropy(logits.flatten(0, 1), streams[:, 1:].flatten(), reduction="sum")
    hand = math.exp(nll.item() / streams[:, 1:].numel())
    assert got["val/ppl"] == pytest.approx(hand, rel=1e-5)
    assert got["val/loss"] == pytest.approx(math.log(hand), rel=1e-5)
    zero = LanguageModelNet(len(dm.vocab), 8, 8, 1, init_range=0.0)  # uniform predictions: ppl = vocab size
    uniform = quiet_trainer(limit_val_batches=None).validate(LanguageModel(zero), dm, verbose=False)[0]
    assert uniform["val/ppl"] == pytest.approx(len(dm.vocab), rel=1e-5)


def one_window_fit(task, steps=1, epochs=1, **kwargs):
    torch.manual_seed(0)
    x = torch.randint(0, 10, (2, 6))
    quiet_trainer(max_epochs=epochs, **kwargs).fit(task, DataLoader([(x, x)] * steps, batch_size=None))


def test_clipping_bounds_the_update_under_manual_optimization():
    torch.manual_seed(0)
    task = LanguageModel(
        LanguageModelNet(10, 4, 4, 1),
        truncated_bptt_steps=None,
        optimization=Optimization(
            optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
            gradient_clip_val=1e-3,  # a hand-built task clips too: the setting is its own
        ),
    )
    before = torch.cat([p.detach().flatten().clone() for p in task.parameters()])
    one_window_fit(task)
    after = torch.cat([p.detach().flatten() for p in task.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)  # lr * clipped norm


def test_scheduler_and_accumulation_under_manual_optimization():
    task = LanguageModel(
        LanguageModelNet(10, 4, 4, 1),
        truncated_bptt_steps=2,
        optimization=Optimization(
            optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
            scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
            accumulate_grad_batches=3,  # 3 chunks of 2 steps: one optimizer step per window
        ),
    )
    one_window_fit(task, steps=2, epochs=3)
    assert task.trainer.global_step == 2 * 3
    assert task.optimizers().param_groups[0]["lr"] == pytest.approx(0.125)


def test_an_epochs_accumulation_remainder_is_stepped_on_not_dropped():
    """3 chunks an epoch, accumulating 2: a step after chunk 2 and one on chunk 3 at the epoch's end."""
    task = LanguageModel(
        LanguageModelNet(10, 4, 4, 1),
        truncated_bptt_steps=2,
        optimization=Optimization(
            optimizer=lambda params: torch.optim.SGD(params, lr=0.1), accumulate_grad_batches=2
        ),
    )
    updates = []
    count = L.Callback()
    count.on_before_optimizer_step = lambda trainer, module, opt: updates.append(trainer.current_epoch)
    one_window_fit(task, steps=1, epochs=2, callbacks=[count])
    assert updates == [0, 0, 1, 1], "the third chunk's gradients were dropped at the next epoch start"
    assert task.trainer.global_step == 4


class CapturedMetrics(Logger):
    """An in-memory logger: what the callbacks wrote, step by step."""

    name, version = "captured", 0

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_language_model_gradient_norms_are_logged_before_clipping():
    torch.manual_seed(0)
    clip = 1e-4
    task = LanguageModel(
        LanguageModelNet(10, 4, 4, 1),
        truncated_bptt_steps=None,
        optimization=Optimization(
            optimizer=lambda params: torch.optim.SGD(params, lr=1.0), gradient_clip_val=clip
        ),
    )
    captured = CapturedMetrics()
    before = torch.cat([p.detach().flatten().clone() for p in task.parameters()])
    one_window_fit(task, logger=captured, callbacks=[GradNormMonitor(every_n_steps=1, params=["*"])])
    norms = {k: v for row in captured.rows for k, v in row.items() if k.endswith("/l2")}
    total = math.sqrt(sum(v**2 for v in norms.values()))
    assert total > 100 * clip, f"logged norms {total:.2e} are the clipped ones (clip {clip})"
    # The step itself used the clipped gradients: with SGD at lr 1 the update's norm is the clip value.
    after = torch.cat([p.detach().flatten() for p in task.parameters()])
    assert (after - before).norm().item() == pytest.approx(clip, rel=1e-3)


def test_free_running_carries_own_predictions_across_chunks_and_batches():
    torch.manual_seed(0)
    net = LanguageModelNet(10, 4, 4, 1)
    inputs = []
    net.embedding.register_forward_hook(lambda m, args, out: inputs.append(args[0].clone()))
    task = LanguageModel(
        net,
        teacher_forcing_ratio=0.0,
        optimization=Optimization(optimizer=lambda p: torch.optim.SGD(p, lr=0.0)),
    )
    task.train()
    first, second = torch.randint(0, 10, (2, 3)), torch.randint(0, 10, (2, 3))
    logits, state = task.forward_chunk(first, None)
    task.forward_chunk(second, state)  # the next chunk (or batch) of the same streams
    assert torch.equal(inputs[3][:, 0], logits[:, -1].argmax(-1)), "the chunk began with the true word"


def test_free_running_feeds_back_own_predictions():
    torch.manual_seed(0)
    net = LanguageModelNet(10, 4, 4, 1)
    inputs = []
    net.embedding.register_forward_hook(lambda m, args, out: inputs.append(args[0].clone()))
    task = LanguageModel(
        net,
        teacher_forcing_ratio=0.0,
        truncated_bptt_steps=None,
        optimization=Optimization(optimizer=lambda p: torch.optim.SGD(p, lr=0.0)),
    )
    x = torch.randint(0, 10, (2, 5))
    task.train()
    logits, _ = task.forward_chunk(x, None)
    assert torch.equal(inputs[0][:, 0], x[:, 0])
    for t in range(1, 5):
        assert torch.equal(inputs[t][:, 0], logits[:, t - 1].argmax(-1))
    task.teacher_forcing_ratio = 1.0
    torch.testing.assert_close(task.forward_chunk(x, None)[0], net(x)[0])


def test_greedy_is_argmax_and_sampling_is_seeded(data_dir):
    dm = ptb_dm(data_dir)
    torch.manual_seed(0)
    net = LanguageModelNet(len(dm.vocab), 8, 8, 1).eval()
    greedy = generate(net, [2, 3], 6, "greedy")
    ids, state = torch.tensor([[2, 3]]), None
    manual = []
    for _ in range(6):
        logits, state = net(ids, state)
        ids = logits[:, -1:].argmax(-1)
        manual.append(int(ids))
    assert greedy == manual
    assert generate(net, [2, 3], 6, "top_k", top_k=1) == greedy
    a, b = (sample_text(net, dm.vocab, "the cat", 20, seed=7) for _ in range(2))
    assert a == b and a.startswith("the cat")
    assert a != sample_text(net, dm.vocab, "the cat", 20, seed=8)


def test_unknown_prompt_word_becomes_unk_with_a_warning(data_dir, caplog):
    dm = ptb_dm(data_dir)
    net = LanguageModelNet(len(dm.vocab), 8, 8, 1)
    text = sample_text(net, dm.vocab, "the zebra", 3)
    assert text.startswith("the <unk>") and "zebra" in caplog.text


def test_distances_against_hand_values():
    m = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    assert distances(m[0], m, "cosine").tolist() == pytest.approx([0.0, 1.0, 1 - 1 / math.sqrt(2), 2.0])
    assert distances(m[0], m, "euclidean").tolist() == pytest.approx([0.0, math.sqrt(5), math.sqrt(13), 2.0])
    vocab = Vocabulary(["<unk>", "b", "c", "d"])
    assert [w for w, _ in nearest(m, vocab, "<unk>", k=2)] == ["c", "b"]
    with pytest.raises(ConfigError, match="metric='manhattan'"):
        distances(m[0], m, "manhattan")


def test_adaptive_softmax_is_a_whole_vocabulary_distribution_scored_exactly():
    torch.manual_seed(0)
    net = LanguageModelNet(
        vocab_size=50, embed_dim=8, hidden_dim=12, softmax="adaptive", cutoffs=[5, 20], div_value=2.0
    )
    net.eval()
    ids, targets = torch.randint(0, 50, (3, 7)), torch.randint(0, 50, (3, 7))
    logits, state = net(ids)
    assert logits.shape == (3, 7, 50)
    assert torch.allclose(logits.logsumexp(-1), torch.zeros(3, 7), atol=1e-5)  # normalised over all 50 ids
    nll_sum, same_state = net.target_nll(ids, targets)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    assert nll_sum.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(state, same_state, strict=True))
    full = LanguageModelNet(vocab_size=50, embed_dim=8, hidden_dim=12)
    full.eval()
    full_logits, _ = full(ids)
    full_nll = F.cross_entropy(full_logits.flatten(0, 1), targets.flatten(), reduction="sum")
    assert full.target_nll(ids, targets)[0].item() == pytest.approx(full_nll.item(), rel=1e-6)


def test_adaptive_softmax_trains_only_the_clusters_its_targets_are_in():
    torch.manual_seed(0)
    net = LanguageModelNet(
        vocab_size=50, embed_dim=8, hidden_dim=12, softmax="adaptive", cutoffs=[5, 20], div_value=2.0
    )
    ids, head_targets = torch.randint(0, 50, (2, 6)), torch.randint(0, 5, (2, 6))
    net.target_nll(ids, head_targets)[0].backward()
    tails = net.decoder.tail
    assert all(p.grad is None for p in tails.parameters())  # no target past the head: the tails cost nothing
    assert net.decoder.head.weight.grad is not None


def test_adaptive_softmax_scores_under_bf16_autocast():
    """precision=bf16-mixed: the recurrent part in bf16, the adaptive softmax (whose index_copy_ refuses
    mixed dtypes) in float32."""
    torch.manual_seed(0)
    net = LanguageModelNet(
        vocab_size=50, embed_dim=8, hidden_dim=12, softmax="adaptive", cutoffs=[5, 20], div_value=2.0
    )
    ids, targets = torch.randint(0, 50, (2, 6)), torch.randint(0, 50, (2, 6))
    exact = net.target_nll(ids, targets)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = net.target_nll(ids, targets)[0]
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(exact.item(), rel=0.05)


def test_tied_adaptive_input_reads_each_word_as_the_vector_its_logit_is_taken_against():
    torch.manual_seed(0)
    settings = {"vocab_size": 50, "embed_dim": 12, "hidden_dim": 12, "softmax": "adaptive"}
    net = LanguageModelNet(**settings, cutoffs=[5, 20], div_value=2.0, tie_weights=True)
    untied = LanguageModelNet(**settings, cutoffs=[5, 20], div_value=2.0)
    vectors, h, softmax = net.embedding.weight, torch.randn(12), net.decoder
    assert vectors.shape == (50, 12)
    assert torch.allclose(vectors[:5] @ h, softmax.head(h)[:5], atol=1e-6)  # head words: the head's rows
    assert torch.allclose(vectors[5:20] @ h, softmax.tail[0](h), atol=1e-6)  # W1 (W0 h) = (W1 W0) h
    assert torch.allclose(vectors[20:] @ h, softmax.tail[1](h), atol=1e-6)
    ids = torch.tensor([[0, 7, 42], [4, 19, 20]])
    assert torch.allclose(net.embedding(ids), vectors[ids], atol=1e-6)
    # No weights of its own: the untied model's embedding matrix is all that is saved.
    count = sum(p.numel() for p in net.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - 50 * 12
    assert not any(k.startswith("embedding.") for k in net.state_dict())
    net.target_nll(ids, ids)[0].backward()  # the input side trains the softmax's matrices too
    assert softmax.tail[1][1].weight.grad[42 - 20].abs().sum() > 0  # 42 is only an input here
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.target_nll(ids, ids)[0].isfinite()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cutoffs": [20, 5]}, "must increase strictly"),
        ({"cutoffs": [50]}, "vocabulary size 50"),
        ({"tie_weights": True, "embed_dim": 8}, "tie_weights needs embed_dim == hidden_dim"),
        ({"div_value": 0.5}, "div_value=0.5"),
        ({"div_value": 4.0}, "leaves the last cluster no features"),
    ],
)
def test_adaptive_softmax_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        defaults = {
            "vocab_size": 50,
            "embed_dim": 8,
            "hidden_dim": 12,
            "softmax": "adaptive",
            "cutoffs": [5, 20],
        }
        LanguageModelNet(**(defaults | kwargs))


@pytest.mark.parametrize("experiment", PTB_EXPERIMENTS)
def test_every_ptb_experiment_runs_with_fast_dev_run(make_cfg, experiment):
    tiny_vocab = (
        ["model.net.cutoffs=[4,8]"] if experiment == "ptb_cpu_hour" else []
    )  # the tiny corpus' 16 words
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", *TINY, *tiny_vocab)
    value, metrics = pipeline.train(cfg)
    assert value == metrics["val/ppl"] and {"val/loss", "test/ppl", "test/loss"} <= set(metrics)


@pytest.fixture
def trained_ptb(make_cfg, tmp_path):
    cfg = make_cfg(
        "experiment=ptb_lab", "debug=limit", "model.net.hidden_dim=16", *TINY, output_dir=tmp_path / "lm"
    )
    _, metrics = pipeline.train(cfg)
    return next((tmp_path / "lm" / "checkpoints").glob("epoch_*.ckpt")), metrics, cfg


def test_eval_sample_and_embeddings_on_a_trained_checkpoint(trained_ptb, make_cfg, tmp_path, data_dir):
    ckpt, trained, _ = trained_ptb
    ev = make_cfg(
        f"ckpt_path={ckpt}", "+trainer.limit_test_batches=2", config_name="eval", output_dir=tmp_path / "e"
    )
    assert pipeline.evaluate(ev)["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)

    out = tmp_path / "sample.txt"
    cfg = make_cfg(f"ckpt_path={ckpt}", "strategy=greedy", "num_words=12", f"out={out}", config_name="sample")
    text = sample(cfg)
    assert out.read_text().strip() == text.strip() and text.startswith("the")

    cfg = make_cfg(
        f"ckpt_path={ckpt}",
        "words=[cat,dog]",
        "k=3",
        f"projector={tmp_path / 'proj'}",
        config_name="embeddings",
    )
    result = embeddings(cfg)
    assert set(result["pairs"]) == {("cat", "dog")} and len(result["nearest"]["cat"]) == 3
    assert list((tmp_path / "proj").rglob("projector_config.pbtxt"))
    bad = make_cfg(f"ckpt_path={ckpt}", "words=[cat,zebra,unicorn]", config_name="embeddings")
    with pytest.raises(ConfigError, match="not in the model's vocabulary .*: zebra, unicorn"):
        embeddings(bad)


def test_tools_refuse_a_checkpoint_of_another_task(make_cfg, tmp_path):
    pipeline.train(
        make_cfg("experiment=mnist_rnn", "debug=limit", "data.val_size=40", output_dir=tmp_path / "m")
    )
    ckpt = tmp_path / "m" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="sampling needs a language model checkpoint"):
        sample(make_cfg(f"ckpt_path={ckpt}", config_name="sample"))
    with pytest.raises(ConfigError, match="SequenceClassifier .*needs a model with a token embedding"):
        embeddings(make_cfg(f"ckpt_path={ckpt}", config_name="embeddings"))


def test_a_checkpoint_storing_an_older_target_still_evaluates(trained_ptb, make_cfg, tmp_path):
    """A checkpoint stores its run's config, `_target_`s included, and eval rebuilds the model from it:
    `seqlab.models.RNNLanguageModel`, the net's target before its rename, stays an alias for that."""
    ckpt, trained, _ = trained_ptb
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    net = checkpoint["seqlab"]["config"]["model"]["net"]
    assert net["_target_"] == "seqlab.models.LanguageModelNet"
    net["_target_"] = "seqlab.models.RNNLanguageModel"
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    ev = make_cfg(
        f"ckpt_path={older}", "+trainer.limit_test_batches=2", config_name="eval", output_dir=tmp_path / "e"
    )
    assert pipeline.evaluate(ev)["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)


def test_a_checkpoint_that_stored_clipping_in_the_model_group_still_evaluates(
    trained_ptb, make_cfg, tmp_path
):
    """Language-model checkpoints made before seqlab.optimization held copies of the trainer's clipping and
    accumulation under `model`; the task takes neither now, and eval drops them (restore.MOVED_SETTINGS)."""
    ckpt, trained, _ = trained_ptb
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["seqlab"]["config"]["model"] |= {"gradient_clip_val": 0.5, "accumulate_grad_batches": 1}
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    ev = make_cfg(
        f"ckpt_path={older}", "+trainer.limit_test_batches=2", config_name="eval", output_dir=tmp_path / "e"
    )
    assert pipeline.evaluate(ev)["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)


def test_the_language_models_optimization_comes_from_the_optimizer_scheduler_and_trainer(make_cfg):
    """One object carries every update setting; the rate is the experiment's for the chosen optimizer."""
    cfg = make_cfg(
        "experiment=ptb_zaremba_small",
        *TINY,
        "trainer.gradient_clip_val=0.5",
        "trainer.accumulate_grad_batches=2",
    )
    task = build.build_task(cfg, build.build_datamodule(cfg))
    optimization = task.optimization
    assert (optimization.gradient_clip_val, optimization.accumulate_grad_batches) == (0.5, 2)
    bound = optimization.configure(task, automatic=False)
    assert bound["optimizer"].param_groups[0]["lr"] == 1.0  # optimizer_lr.sgd of ptb_zaremba_small
    assert bound["lr_scheduler"]["interval"] == "epoch" and "monitor" not in bound["lr_scheduler"]
    adam = build.build_task(
        cfg := make_cfg("experiment=ptb_zaremba_small", *TINY, "optimizer=adam"), build.build_datamodule(cfg)
    )
    assert adam.optimization.configure(adam)["optimizer"].param_groups[0]["lr"] == 0.001
    with pytest.raises(ConfigError, match=r"lr_schedule.interval=.hourly. is not supported"):
        bad = make_cfg("experiment=ptb_lab", *TINY, "scheduler=cosine", "lr_schedule.interval=hourly")
        build.build_task(bad, build.build_datamodule(bad))


@pytest.mark.slow
def test_sample_cli(trained_ptb, data_dir, tmp_path):
    ckpt = trained_ptb[0]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqlab.sample",
            f"ckpt_path={ckpt}",
            "prompt=the zebra",
            "num_words=5",
            "strategy=top_k",
            "top_k=3",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("the <unk>") and "zebra" in done.stdout + done.stderr
    assert not list(cwd.iterdir()), "tools leave no run dir behind"


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.truncated_bptt_steps=50", "truncated_bptt_steps=50 is larger than the window data.seq_len=6"),
        ("model.truncated_bptt_steps=0", "truncated_bptt_steps=0 must be a positive integer or null"),
        ("model.loss_scale=mean", "loss_scale='mean' is not supported"),
        ("model.teacher_forcing_ratio=1.5", "teacher_forcing_ratio=1.5 must lie in"),
        ("model.net.tie_weights=true", "tie_weights needs embed_dim == hidden_dim"),
        ("data.seq_len=0", "seq_len=0 must be a positive integer"),
    ],
)
def test_lm_config_errors(make_cfg, override, message):
    overrides = [o for o in TINY if not o.startswith(override.split("=")[0])]
    with pytest.raises(ConfigError, match=message):
        pipeline.train(make_cfg("experiment=ptb_lab", "debug=fdr", *overrides, override))


def test_bad_corpus_files(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError, match=r"(?s)Penn Treebank data not found.*ptb.train.txt, ptb.valid.txt"):
        PTBDataModule(str(tmp_path)).prepare_data()
    root = make_ptb(tmp_path)
    (root / "ptb/ptb.valid.txt").write_text("   \n\n")
    with pytest.raises(DataError, match="ptb.valid.txt is empty"):
        ptb_dm(root)
    (root / "ptb/ptb.valid.txt").write_bytes(b"\xff\xfe bad bytes")
    with pytest.raises(DataError, match="not UTF-8"):
        ptb_dm(root)
    (root / "ptb/ptb.valid.txt").write_text(" ".join(f"w{i}" for i in range(100)) + "\n")
    with pytest.raises(DataError, match="unknown to the training vocabulary"):
        ptb_dm(root)
