import pytest
import torch
from torch import nn

from seqlab.models import OwnRNN, RecurrentEncoder, SequenceClassifierNet

CELLS = ("rnn", "lstm", "gru", "own_rnn")  # RecurrentEncoder's own


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_own_rnn_equals_nn_rnn_with_the_same_weights(num_layers, bidirectional):
    torch.manual_seed(0)
    ref = nn.RNN(5, 7, num_layers, batch_first=True, bidirectional=bidirectional)
    own = OwnRNN(5, 7, num_layers, bidirectional=bidirectional)
    own.load_state_dict(ref.state_dict())  # same names and shapes as nn.RNN
    x = torch.randn(3, 11, 5)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), 3, 7)
    out_ref, h_ref = ref(x, h0)
    out_own, h_own = own(x, h0)
    torch.testing.assert_close(out_own, out_ref)
    torch.testing.assert_close(h_own, h_ref)
    out_ref.sum().backward()
    out_own.sum().backward()
    torch.testing.assert_close(own.weight_hh_l0.grad, ref.weight_hh_l0.grad)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_shapes(cell, bidirectional):
    net = SequenceClassifierNet(
        num_classes=10, input_dim=28, cell=cell, hidden_dim=16, num_layers=2, bidirectional=bidirectional
    )
    logits = net(torch.randn(4, 28, 28))
    assert logits.shape == (4, 10)
    assert net.encoder.output_dim == 16 * (2 if bidirectional else 1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_enters_the_recurrence(cell, side, bidirectional):
    """Final state and outputs of a padded row equal running that row alone, for packed and masked cells."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 6, num_layers=2, cell=cell, bidirectional=bidirectional).eval()
    x = torch.randn(2, 9, 4)
    mask = torch.ones(2, 9, dtype=torch.bool)
    real = slice(0, 5) if side == "right" else slice(4, 9)
    pad = slice(5, 9) if side == "right" else slice(0, 4)
    mask[1, pad] = False
    x[1, pad] = 100.0  # garbage in the padding must not matter
    out, state = enc(x, mask)
    alone_out, alone = enc(x[1:, real])
    torch.testing.assert_close(enc.last_hidden(state)[1], enc.last_hidden(alone)[0])
    torch.testing.assert_close(out[1, real], alone_out[0])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_rows_keep_their_order_and_their_states(cell):
    """The packed (bidirectional) path sorts rows by length and back: each row, out of length order here,
    gets its own outputs and initial and final states, every layer's, as if run alone."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 6, num_layers=2, cell=cell, bidirectional=True).eval()
    lengths = [3, 9, 6]
    x = torch.randn(3, 9, 4)
    mask = torch.arange(9) < torch.tensor(lengths)[:, None]
    h0 = torch.randn(4, 3, 6)
    state = (h0, torch.randn(4, 3, 6)) if cell == "lstm" else h0

    def row(s, i):
        return tuple(t[:, i : i + 1] for t in s) if isinstance(s, tuple) else s[:, i : i + 1]

    out, final = enc(x, mask, state)
    for i, n in enumerate(lengths):
        alone_out, alone = enc(x[i : i + 1, :n], None, row(state, i))
        torch.testing.assert_close(out[i, :n], alone_out[0])
        torch.testing.assert_close(out[i, n:], torch.zeros(9 - n, 12))
        torch.testing.assert_close(row(final, i), alone)


def test_masked_pooling_ignores_padding():
    torch.manual_seed(0)
    for pooling in ("mean", "max"):
        net = SequenceClassifierNet(
            num_classes=2, vocab_size=20, embed_dim=8, cell="gru", hidden_dim=8, num_layers=1, pooling=pooling
        ).eval()
        ids = torch.randint(1, 20, (1, 6))
        padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
        mask = padded != 0
        torch.testing.assert_close(net(padded, mask), net(ids, torch.ones_like(ids, dtype=torch.bool)))


@pytest.mark.parametrize("cell", [{"name": "lstm", "pack": True}, {"name": "lstm", "pack": False}, "gru"])
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_segments_are_read_apart_and_pooled_over_the_whole_sequence(cell, pooling):
    """segment_length=4: each 4-step piece of a row encoded alone from a zero state, the row's pooling over
    all its pieces' outputs (padding left out); a piece of padding only is never read. (Unpacked, a backward
    direction reads a piece's padding before its end: that path is tested one-way.)"""
    torch.manual_seed(0)
    settings = dict(num_classes=3, vocab_size=30, embed_dim=5, cell=cell, hidden_dim=6, pooling=pooling)
    both_ways = cell == "gru" or cell["pack"]
    net = SequenceClassifierNet(**settings, bidirectional=both_ways, segment_length=4).eval()
    ids = torch.randint(1, 30, (2, 14))
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[1, 6:] = False  # row 1: 6 tokens, then padding over two whole segments and part of one
    ids[1, 6:] = 0
    calls = []
    net.encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    logits = net(ids, mask)
    assert calls == [4 + 2], "row 0's four segments and row 1's two, none of padding only"

    def alone(row: int) -> torch.Tensor:
        n = int(mask[row].sum())
        pieces = [
            net.encoder(net.embedding(ids[row : row + 1, s : min(s + 4, n)]))[0] for s in range(0, n, 4)
        ]
        out = torch.cat(pieces, 1)[0]
        return out.amax(0) if pooling == "max" else out.mean(0)

    for row in range(2):
        torch.testing.assert_close(logits[row], net.head(alone(row)))
    # Without a mask every step is read, the last segment's padding (to whole segments) left out.
    torch.testing.assert_close(net(ids[:1]), logits[:1])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"cell": "transformerz"},
            "cell='transformerz' is not a registered cell; registered: rnn, own_rnn, lstm, gru, transformer, indrnn",
        ),
        ({"hidden_dim": 0}, "hidden_dim=0 must be a positive integer"),
        ({"num_layers": -1}, "num_layers=-1 must be a positive integer"),
        ({"dropout": 1.0}, "dropout=1.0 must lie in [0, 1)"),
        ({"pooling": "sum"}, "pooling='sum' is not supported"),
        ({"segment_length": 0, "pooling": "max"}, "segment_length=0 must be a positive integer"),
        ({"segment_length": 5}, "segment_length=5 needs pooling: max or mean"),
    ],
)
def test_bad_model_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        SequenceClassifierNet(num_classes=10, input_dim=28, **kwargs)


def test_adamw_gives_the_lrus_recurrence_no_decay_and_half_the_rate_and_matrices_their_decay():
    from functools import partial

    from seqlab.optimization import Optimization, describe_groups

    net = SequenceClassifierNet(
        3, input_dim=4, cell={"name": "lru", "r_min": 0.99}, hidden_dim=8, num_layers=2
    )
    optimization = Optimization(optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05))
    optimizer = optimization.configure(net)
    by_name = {n: g for g in optimizer.param_groups for n in g["names"]}
    assert set(by_name) == {n for n, _ in net.named_parameters()}  # every parameter, once
    for layer in range(2):
        for name in ("nu_log", "theta_log", "gamma_log"):
            group = by_name[f"encoder.layers.{layer}.lru.{name}"]
            assert group["weight_decay"] == 0.0 and group["lr"] == pytest.approx(5e-4)
        assert by_name[f"encoder.layers.{layer}.lru.B_re"]["weight_decay"] == 0.05  # a matrix: decayed
        assert by_name[f"encoder.layers.{layer}.norm.weight"]["weight_decay"] == 0.0  # a norm's scale
        assert by_name[f"encoder.layers.{layer}.glu.bias"]["weight_decay"] == 0.0  # a bias
    assert by_name["head.weight"]["weight_decay"] == 0.05 and by_name["head.weight"]["lr"] == 1e-3
    line = describe_groups(optimizer)
    assert line.startswith("AdamW parameter groups: ") and "weight_decay 0, lr 0.0005" in line
    assert len(optimizer.param_groups) == 3 and "\n" not in line


def test_without_weight_decay_or_settings_the_parameters_stay_one_group():
    """No decay to switch off and no scaled rate: one group, as before parameter groups existed (so the
    optimizer states of older checkpoints still load)."""
    from functools import partial

    from seqlab.optimization import Optimization

    net = SequenceClassifierNet(3, input_dim=4, cell="lstm", hidden_dim=8)
    optimizer = Optimization(optimizer=partial(torch.optim.Adam, lr=1e-3)).configure(net)
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_init_spreads_the_keep_gates_memory_up_to_t_max(cell):
    torch.manual_seed(0)
    net = SequenceClassifierNet(3, input_dim=4, cell={"name": cell, "chrono": 500}, hidden_dim=256)
    rnn, h = net.encoder.rnn, 256
    keep = rnn.bias_ih_l0[h : 2 * h]  # LSTM (i, f, g, o) and GRU (r, z, n): the second chunk keeps
    assert keep.min() >= 0 and keep.max() <= torch.log(torch.tensor(499.0)) and keep.std() > 0.5
    assert (rnn.bias_hh_l0[h : 2 * h] == 0).all()
    if cell == "lstm":
        torch.testing.assert_close(rnn.bias_ih_l0[:h], -keep)  # input gate: -b_f
    fixed = SequenceClassifierNet(3, input_dim=4, cell={"name": cell, "forget_bias": 1.0}, hidden_dim=8)
    assert (fixed.encoder.rnn.bias_ih_l0[8:16] == 1.0).all()


def test_the_docs_table_of_cells_is_the_registrys():
    """docs/tasks.md lists seqlab's own cells with their settings: the registry's, exactly."""
    from seqlab.models.registry import encoder_entry, encoder_names
    from tests.helpers import REPO

    doc = (REPO / "docs" / "tasks.md").read_text().split("## Cells and their settings")[1].split("\n\n- ")[0]
    rows = {}
    for line in doc.splitlines():
        if line.startswith("| `"):
            name, _, settings = (c.strip() for c in line.strip("|").split("|"))
            rows[name.strip("`")] = settings
    own = [n for n in encoder_names() if encoder_entry(n).provider == "seqlab"]
    assert list(rows) == own
    for name in own:
        documented = ", ".join(f"`{k}={v!r}`" for k, v in encoder_entry(name).settings().items())
        assert rows[name] == documented, name


def test_the_documented_new_cell_registers_and_trains(make_cfg, tmp_path):
    """docs/development.md's walk-through cell, run as written: one file's code makes a cell that a
    config names, with its own setting checked. (seqlab's own lru.py, indrnn.py and mingru.py are found
    the same way: nothing imports them but the registry's scan of seqlab.models.)"""
    import math

    from seqlab import pipeline
    from seqlab.errors import ConfigError
    from tests.helpers import REPO

    doc = (REPO / "docs" / "development.md").read_text()
    code = doc.split("**Adding a built-in cell.**")[1].split("```python\n")[1].split("```")[0]
    exec(compile(code, "delay_cell", "exec"), {"__name__": "seqlab.models.delay_doc"})
    cfg = make_cfg(
        "experiment=copy_memory", "data.seq_len=5", "debug=fdr", "model.net.cell={name:delay,delay:3}"
    )
    value, _ = pipeline.train(cfg)
    assert math.isfinite(value)
    with pytest.raises(
        ConfigError, match=r"^model.net.cell.dealy: delay has no such setting; its settings: delay=1$"
    ):
        pipeline.train(
            make_cfg(
                "experiment=copy_memory",
                "debug=fdr",
                "model.net.cell={name:delay,dealy:3}",
                output_dir=tmp_path / "a",
            )
        )
    with pytest.raises(ConfigError, match=r"^model.net.cell=delay: delay=0 must be >= 1"):
        pipeline.train(
            make_cfg(
                "experiment=copy_memory",
                "debug=fdr",
                "model.net.cell={name:delay,delay:0}",
                output_dir=tmp_path / "b",
            )
        )


def test_an_installed_cell_that_cannot_load_is_named_when_asked_for_and_spares_the_others(monkeypatch):
    from importlib import metadata

    from seqlab.errors import ConfigError
    from seqlab.models import registry

    broken = metadata.EntryPoint("broken_cell", "no_such_lab.cells:Cell", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [broken])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_broken", {})
    assert "lstm" in registry.encoder_names() and "broken_cell" not in registry.encoder_names()
    with pytest.raises(
        ConfigError,
        match=r"^model.net.cell='broken_cell': the seqlab.encoders entry point "
        r"no_such_lab.cells:Cell \(from \?\) cannot be loaded: ModuleNotFoundError",
    ):
        registry.encoder_entry("broken_cell")
