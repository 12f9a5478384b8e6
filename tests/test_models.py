import pytest
import torch
from torch import nn

from seqlab.models import CELLS, OwnRNN, RecurrentEncoder, SequenceClassifierNet


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


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"cell": "transformerz"},
            "cell='transformerz' is not supported; allowed: rnn, lstm, gru, own_rnn, indrnn, lru, mingru, minlstm, transformer",
        ),
        ({"hidden_dim": 0}, "hidden_dim=0 must be a positive integer"),
        ({"num_layers": -1}, "num_layers=-1 must be a positive integer"),
        ({"dropout": 1.0}, "dropout=1.0 must lie in [0, 1)"),
        ({"pooling": "sum"}, "pooling='sum' is not supported"),
    ],
)
def test_bad_model_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        SequenceClassifierNet(num_classes=10, input_dim=28, **kwargs)
