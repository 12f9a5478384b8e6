"""The long-memory problems and the diagonal cells (IndRNN, LRU, minGRU, minLSTM): scans equal their step
loops, padding and carried state behave as the fused cells', the data is the same for the same index."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seqlab import pipeline
from seqlab.build import build_datamodule, build_task
from seqlab.data.long_memory import LongMemoryDataModule
from seqlab.errors import ConfigError
from seqlab.models import (
    DiagonalRecurrentEncoder,
    Encoder,
    SequenceClassifierNet,
    build_encoder,
    encoder_names,
    register_encoder,
)
from seqlab.models.diagonal import linear_recurrence_loop, linear_scan, log_linear_scan
from tests.helpers import EXPERIMENTS


def diagonal(
    input_dim: int, hidden_dim: int, num_layers: int, cell: str, **settings
) -> DiagonalRecurrentEncoder:
    sizes = {"input_dim": input_dim, "hidden_dim": hidden_dim, "num_layers": num_layers}
    return build_encoder({"name": cell, **settings}, **sizes, dropout=0.0, bidirectional=False)


# The registered cells built on the diagonal stack (no list written here: a new one is tested too).
DIAGONAL_CELLS = [
    c
    for c in encoder_names()
    if isinstance(build_encoder(c, input_dim=1, hidden_dim=8, num_layers=1), DiagonalRecurrentEncoder)
]
LONG_MEMORY_EXPERIMENTS = [e for e in EXPERIMENTS if e.split("_")[0] in ("adding", "copy")]
SCANNED = [
    ("lru", "chunked"),
    ("mingru", "chunked"),
    ("mingru", "log"),
    ("minlstm", "chunked"),
    ("minlstm", "log"),
]


def float64(generator_seed: int, *shape: int, positive: bool = False) -> torch.Tensor:
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(generator_seed))
    return x.abs() + 0.1 if positive else x


@pytest.mark.parametrize("steps", [1, 2, 7, 36, 101])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_linear_scan_equals_the_step_loop_with_gradients(steps, dtype):
    a = float64(0, 3, steps, 4).sigmoid()
    if dtype.is_complex:  # |a| < 1 with a phase, as the LRU's lambda
        a = a * torch.exp(1j * float64(2, 3, steps, 4))
    a = a.to(dtype).requires_grad_()
    b = float64(3, 3, steps, 4).to(dtype).requires_grad_()
    h0 = float64(4, 3, 4).to(dtype).requires_grad_()
    outputs = [linear_scan(a, b, h0), linear_recurrence_loop(a, b, h0)]
    grads = [torch.autograd.grad(out.abs().sum(), (a, b, h0)) for out in outputs]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-6, rtol=0)
    for scanned, looped in zip(*grads, strict=True):
        torch.testing.assert_close(scanned, looped, atol=1e-6, rtol=0)


def test_log_scan_equals_the_step_loop_even_where_products_underflow():
    a = torch.full((2, 3000, 3), 0.5, dtype=torch.float64)  # 0.5^3000 underflows float64
    b, h0 = float64(0, 2, 3000, 3, positive=True), float64(1, 2, 3, positive=True)
    torch.testing.assert_close(
        log_linear_scan(a.log(), b.log(), h0.log()).exp(), linear_recurrence_loop(a, b, h0), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(("cell", "scan"), SCANNED)
def test_each_scanned_cell_equals_its_reference_loop_outputs_and_gradients(cell, scan):
    prefix, x = float64(0, 3, 6, 5), float64(1, 3, 45, 5)
    results = []
    for mode in (scan, "loop"):
        torch.manual_seed(0)
        encoder = diagonal(5, 8, 2, cell, scan=mode).double()
        _, carried = encoder(prefix)  # a state handed on from an earlier call
        out, state = encoder(x, state=carried.detach())
        loss = out.square().sum() + state.abs().sum()
        results.append((out, state, torch.autograd.grad(loss, list(encoder.parameters()))))
    (out_s, state_s, grads_s), (out_l, state_l, grads_l) = results
    torch.testing.assert_close(out_s, out_l, atol=1e-6, rtol=0)
    torch.testing.assert_close(state_s, state_l, atol=1e-6, rtol=0)
    for scanned, looped in zip(grads_s, grads_l, strict=True):
        torch.testing.assert_close(scanned, looped, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", DIAGONAL_CELLS)
def test_padding_never_reaches_a_real_step_on_either_side(cell):
    torch.manual_seed(0)
    encoder = diagonal(3, 6, 2, cell).double().eval()
    x = float64(0, 1, 7, 3)
    alone, alone_state = encoder(x)
    noise = float64(1, 1, 4, 3) * 100
    for padded, mask, real in (
        (torch.cat([x, noise], 1), torch.arange(11) < 7, slice(0, 7)),  # right padding
        (torch.cat([noise, x], 1), torch.arange(11) >= 4, slice(4, 11)),  # left padding
    ):
        out, state = encoder(padded, mask[None], None)
        torch.testing.assert_close(out[:, real], alone, atol=1e-9, rtol=0)
        assert out[:, ~mask].abs().max() == 0
        torch.testing.assert_close(state, alone_state, atol=1e-9, rtol=0)
        pooled = SequenceClassifierNet(2, input_dim=3, cell=cell).encoder.pool_last(out, state, mask[None])
        torch.testing.assert_close(pooled, alone[:, -1])


@pytest.mark.parametrize("cell", DIAGONAL_CELLS)
def test_state_carries_across_calls(cell):
    """Two halves with the state handed on give the whole sequence's outputs (a TBPTT window's need)."""
    torch.manual_seed(0)
    encoder = diagonal(3, 6, 2, cell).double().eval()
    x = float64(0, 2, 20, 3)
    whole, whole_state = encoder(x)
    first, state = encoder(x[:, :9])
    second, state = encoder(x[:, 9:], state=state)
    if cell == "indrnn":  # its recurrent bound is 2^(1/T): a shorter call allows more, never less
        assert encoder.layers[0].recurrent_weight.abs().max() <= 2 ** (1 / 20)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-9, rtol=0)
    torch.testing.assert_close(state, whole_state, atol=1e-9, rtol=0)


def test_indrnn_keeps_its_recurrent_weights_within_the_papers_bound():
    torch.manual_seed(0)
    encoder = diagonal(2, 4, 1, "indrnn")
    with torch.no_grad():
        encoder.layers[0].recurrent_weight.fill_(3.0)
    encoder(torch.randn(1, 10, 2))
    assert torch.allclose(encoder.layers[0].recurrent_weight, torch.tensor(2**0.1))


def test_lru_starts_on_its_ring_and_normalised():
    torch.manual_seed(0)
    lru = diagonal(2, 256, 1, "lru").layers[0].lru
    modulus = torch.exp(-torch.exp(lru.nu_log))
    assert modulus.min() >= 0.9 and modulus.max() <= 0.999
    torch.testing.assert_close(torch.exp(lru.gamma_log), torch.sqrt(1 - modulus**2))
    assert torch.exp(lru.theta_log).max() <= math.pi / 10


def test_bad_cell_settings_are_one_line_each():
    sizes = {"input_dim": 3, "hidden_dim": 8, "num_layers": 1}
    with pytest.raises(
        ConfigError, match=r"^model.net.cell=lru: bidirectional=true: the diagonal cells run forward only"
    ):
        build_encoder("lru", **sizes, bidirectional=True)
    with pytest.raises(
        ConfigError,
        match=r"^model.net.cell='lstmx' is not a registered cell; registered: .*indrnn, lru, mingru, minlstm",
    ):
        build_encoder("lstmx", **sizes)
    with pytest.raises(
        ConfigError, match=r"^model.net.cell=lru: scan='log' is not supported; allowed: chunked, loop"
    ):
        diagonal(3, 8, 1, "lru", scan="log")
    with pytest.raises(
        ConfigError,
        match=r"^model.net.cell.rmin: lru has no such setting; its settings: r_min=0.9, r_max=0.999",
    ):
        diagonal(3, 8, 1, "lru", rmin=0.5)
    for bad, line in (
        ({"r_min": 0.99, "r_max": 0.9}, r"r_min=0.99, r_max=0.9: need 0 <= r_min < r_max < 1"),
        ({"r_max": 1.0}, r"r_min=0.9, r_max=1.0: need 0 <= r_min < r_max < 1"),
        ({"max_phase": 0.0}, r"max_phase=0.0: need 0 < max_phase <= 2 pi"),
    ):
        with pytest.raises(ConfigError, match=rf"^model.net.cell=lru: {line}"):
            diagonal(3, 8, 1, "lru", **bad)
    with pytest.raises(ConfigError, match=r"^model.net.cell=indrnn: activation='gelu'; allowed: relu, tanh"):
        diagonal(3, 8, 1, "indrnn", activation="gelu")
    with pytest.raises(
        ConfigError, match=r"^model.net.cell=indrnn: recurrent_min=0.5, recurrent_max=0.1: need"
    ):
        diagonal(3, 8, 1, "indrnn", recurrent_min=0.5, recurrent_max=0.1)
    with pytest.raises(ConfigError, match=r"^model.net.cell=mingru: scan='fast' is not supported"):
        diagonal(3, 8, 1, "mingru", scan="fast")
    with pytest.raises(ConfigError, match=r"^model.net.cell=lstm: chrono=1: T_max"):
        build_encoder({"name": "lstm", "chrono": 1}, **sizes)
    with pytest.raises(ConfigError, match=r"^model.net.cell=gru: chrono and forget_bias both"):
        build_encoder({"name": "gru", "chrono": 10, "forget_bias": 1.0}, **sizes)


@pytest.mark.parametrize("problem", ["adding", "copy"])
def test_examples_are_the_same_for_the_same_index_and_differ_between_splits(problem):
    first, second = LongMemoryDataModule(problem, 30), LongMemoryDataModule(problem, 30)
    (train_a, val_a, test_a), (train_b, _, _) = first.make_splits(), second.make_splits()
    (xa, ya), (xb, yb) = train_a[[5, 3]], train_b[[3, 5]]
    assert torch.equal(xa[0], xb[1]) and torch.equal(ya[1], yb[0])
    assert not torch.equal(train_a[[0]][0], val_a[[0]][0]) and not torch.equal(val_a[[0]][0], test_a[[0]][0])
    other_seed = LongMemoryDataModule(problem, 30, data_seed=1).make_splits()[0]
    assert not torch.equal(other_seed[[0]][0], train_a[[0]][0])


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    x, y = LongMemoryDataModule("adding", 40).make_splits()[0][list(range(200))]
    markers = x[..., 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :20].sum(1) == 1).all() and (markers[:, 20:].sum(1) == 1).all()
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(1))
    # the mean answer's MSE, the baseline the problem is judged by: about 1/6
    assert abs(((y - 1) ** 2).mean().item() - 1 / 6) < 0.03


def test_copy_memory_recalls_the_ten_symbols_after_the_delimiter():
    module = LongMemoryDataModule("copy", 25)
    x, y = module.make_splits()[0][list(range(50))]
    ids = x.argmax(-1)
    assert x.shape == (50, 45, 10) and ids.shape == y.shape
    assert ((ids[:, :10] >= 1) & (ids[:, :10] <= 8)).all() and (ids[:, 10 + 24] == 9).all()
    assert (y[:, :-10] == 0).all() and torch.equal(y[:, -10:], ids[:, :10])
    assert module.baseline == pytest.approx(10 * math.log(8) / 45)


def test_sequence_length_below_one_is_one_line(make_cfg):
    with pytest.raises(ConfigError, match=r"data.seq_len=0: the sequence length T must be an integer >= 1"):
        pipeline.train(make_cfg("experiment=adding", "data.seq_len=0", "debug=fdr"))


def test_a_regression_with_per_step_outputs_names_the_pooling(make_cfg):
    with pytest.raises(ValueError, match=r"a regression needs model.net.pooling=last\|mean\|max"):
        pipeline.train(make_cfg("experiment=adding", "data.seq_len=5", "model.net.pooling=none", "debug=fdr"))


@pytest.mark.parametrize("experiment", LONG_MEMORY_EXPERIMENTS)
@pytest.mark.parametrize("cell", ["lstm", *DIAGONAL_CELLS])
def test_every_long_memory_experiment_runs_each_cell_with_fast_dev_run(make_cfg, experiment, cell):
    cfg = make_cfg(f"experiment={experiment}", f"model.net.cell={cell}", "data.seq_len=12", "debug=fdr")
    value, metrics = pipeline.train(cfg)
    assert value == metrics["val/loss"] and math.isfinite(value)
    assert {"train/loss", "val/loss", "test/loss"} <= set(metrics)
    if experiment.startswith("copy"):
        assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.slow
def test_a_short_adding_problem_is_learned_below_its_baseline(make_cfg):
    """The problem can be learned through the whole pipeline (T = 10: seconds on a CPU)."""
    cfg = make_cfg(
        "experiment=adding", "data.seq_len=10", "model.net.cell=mingru", "trainer.max_steps=300",
        "trainer.val_check_interval=300", "data.train_size=2000", "data.val_size=200", "data.test_size=200",
        "logger=none",
    )  # fmt: skip
    _, metrics = pipeline.train(cfg)
    assert metrics["test/loss"] < 0.02 < 1 / 6


class Stateless(Encoder):
    """A user's encoder (registered by name) that keeps no state."""

    def __init__(self, input_dim, hidden_dim, num_layers, dropout=0.0, bidirectional=False):
        super().__init__()
        self.inner, self.output_dim = (
            diagonal(input_dim, hidden_dim, num_layers, "mingru"),
            hidden_dim,
        )

    def forward(self, x, mask=None, state=None):
        return self.inner(x, mask)[0], None


def test_a_cell_without_state_is_refused_by_the_language_model_in_one_line():
    from seqlab.models import LanguageModelNet
    from seqlab.tasks import LanguageModel

    register_encoder("stateless_test_cell", Stateless)
    net = LanguageModelNet(20, embed_dim=4, hidden_dim=4, num_layers=1, cell="stateless_test_cell")
    task = LanguageModel(net)
    with pytest.raises(ConfigError, match=r"Stateless returns no state, and the language model carries it"):
        task.training_step((torch.randint(20, (2, 5)), torch.randint(20, (2, 5))), 0)


def test_a_cells_settings_reach_it_from_the_config_and_the_groups_are_logged_once(make_cfg, caplog):
    """`scan=log` and `forget_bias` reach minGRU (its settings beside its name), and the run log says
    once which parameters train with what."""
    cell = "model.net.cell={name:mingru,scan:log,forget_bias:3.0}"
    cfg = make_cfg(
        "experiment=adding",
        cell,
        "data.seq_len=5",
        "debug=fdr",
        "optimizer=adamw",
        "optimizer.weight_decay=0.1",
    )
    with caplog.at_level("INFO", logger="seqlab"):
        value, _ = pipeline.train(cfg)
    assert math.isfinite(value)
    task = build_task(cfg, build_datamodule(cfg))
    layers = task.net.encoder.layers
    assert [layer.scan for layer in layers] == ["log", "log"]
    hidden = cfg.model.net.hidden_dim
    assert all(
        (layer.input.bias[:hidden] < -2).all() for layer in layers
    )  # keep = sigmoid(-k) starts near 0.95
    logged = [r.getMessage() for r in caplog.records if "parameter groups" in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith("AdamW parameter groups: ")
    assert "weight_decay 0.1, lr 0.001" in logged[0] and "weight_decay 0, lr 0.001" in logged[0]


@pytest.mark.parametrize("problem", ["adding", "copy"])
def test_a_curriculum_trains_each_epoch_on_its_length_and_always_scores_at_seq_len(problem):
    from types import SimpleNamespace

    module = LongMemoryDataModule(problem, 12, train_size=20, val_size=5, test_size=5, curriculum=[4, 7])
    module.setup()
    extra = 0 if problem == "adding" else 20  # copy: the symbols, the delimiter, the recall steps
    for epoch, length in ((0, 4), (1, 7), (2, 12), (5, 12)):
        module.trainer = SimpleNamespace(current_epoch=epoch)
        assert module.train_set[[0, 1]][0].shape[1] == length + extra
        assert module.val_set[[0]][0].shape[1] == module.test_set[[0]][0].shape[1] == 12 + extra
    with pytest.raises(ConfigError, match=r"data.curriculum=\[0\]: a list of sequence lengths"):
        LongMemoryDataModule(problem, 12, curriculum=[0])
    with pytest.raises(ConfigError, match=r"data.curriculum needs data.num_workers=0"):
        LongMemoryDataModule(problem, 12, curriculum=[4], num_workers=1)


def test_a_curriculum_run_trains_through_the_pipeline(make_cfg):
    cfg = make_cfg(
        "experiment=adding",
        "data.seq_len=12",
        "data.curriculum=[4,8]",
        "data.train_size=100",
        "trainer.max_steps=12",
        "trainer.val_check_interval=2",
        "data.val_size=20",
        "data.batch_size=25",
    )
    value, metrics = pipeline.train(cfg)
    assert math.isfinite(value) and metrics["val/loss"] == value


def test_a_checkpoint_written_before_the_models_and_optimizers_were_renamed_restores_in_eval(
    make_cfg, tmp_path
):
    """Run dirs of earlier versions store SequenceClassifierNet with pooling none for a step classifier,
    NT-ASGD as seqlab.tasks.NTASGD and the scheduler's interval inside its node: eval rebuilds them."""
    cfg = make_cfg(
        "experiment=copy_memory", "data.seq_len=12", "data.train_size=64", "data.val_size=32",
        "data.test_size=32", "data.batch_size=32", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "test=false",
    )  # fmt: skip
    pipeline.train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    config = checkpoint["seqlab"]["config"]
    config["model"]["net"] |= {"_target_": "seqlab.models.SequenceClassifierNet", "pooling": "none"}
    config["optimizer"] = {"_target_": "seqlab.tasks.NTASGD", "_partial_": True, "lr": 1.0}
    config["scheduler"] = {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 1}
    config["scheduler"] |= {"interval": "epoch", "monitor": "val/loss"}
    config.pop("lr_schedule", None)
    torch.save(checkpoint, tmp_path / "old.ckpt")

    def evaluate(path: Path) -> dict[str, float]:
        return pipeline.evaluate(
            make_cfg(f"ckpt_path={path}", config_name="eval", output_dir=tmp_path / path.stem)
        )

    assert evaluate(tmp_path / "old.ckpt") == evaluate(ckpt)


def test_copy_accuracy_counts_only_the_recalled_symbols_not_the_blanks():
    """A net that answers blank everywhere is right on most steps of copy memory and recalls nothing:
    its accuracy is 0, and one that also gets 2 of the 4 symbols right scores 0.5."""
    from seqlab.tasks import StepClassifier

    class Fixed(torch.nn.Module):
        def __init__(self, answer: torch.Tensor) -> None:
            super().__init__()
            self.answer, self.weight = answer, torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, mask=None):
            return torch.nn.functional.one_hot(self.answer, 5).float() + 0 * self.weight

    targets = torch.tensor([[0, 0, 0, 0, 0, 0, 3, 1, 4, 2]])  # blanks, then the 4 symbols to recall
    blanks = torch.zeros_like(targets)
    task = StepClassifier(Fixed(blanks), blank_id=0)
    losses = task._losses((torch.zeros(1, 10, 5), targets))
    assert losses["acc"] == (0.0, 4)
    half = blanks.clone()
    half[0, 6:8] = targets[0, 6:8]
    task = StepClassifier(Fixed(half), blank_id=0)
    correct, count = task._losses((torch.zeros(1, 10, 5), targets))["acc"]
    assert correct / count == 0.5
