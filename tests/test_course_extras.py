"""The rest of the course as library features, checked against the course's own worked answers."""

import pytest
import torch
from torch import nn

from seqlab import pipeline, restore
from seqlab.course import one_hot, receptive_field
from seqlab.data.text import UNK, Vocabulary
from seqlab.models import BagOfEmbeddings, LanguageModelNet, PositionwiseFeedForward, SequenceClassifierNet
from seqlab.models.transformer import SelfAttentionEncoder
from seqlab.tools.attack import attack_checkpoint as attack
from seqlab.tools.attack import fgsm, targeted

WORDS = ["the", "quick", "brown", "sly", "fox", "jumped", "over", "a", "lazy", "dog", "and", "found", "lion"]


def test_one_hot_words_and_mean_of_embeddings_over_a_sentence():
    vocab = Vocabulary([*WORDS, UNK])  # 13 words + the extra category for unknown words
    assert len(WORDS) == 13 and len(vocab) == 14
    hot = one_hot(vocab, ["the", "lion", "zebra"])
    assert hot.shape == (3, 14) and hot.sum(1).tolist() == [1, 1, 1]
    assert hot[0, 0] == 1 and hot[1, 12] == 1 and hot[2, 13] == 1, "an unknown word is the extra category"
    torch.manual_seed(0)
    bag = BagOfEmbeddings(vocab_size=len(vocab), num_classes=2, embed_dim=100, pad_id=None)
    for sentence in ("the sly fox", "a lazy dog found lion", "the zebra jumped over"):
        words = sentence.split()
        vector = bag.sentence_vectors(torch.tensor([vocab.encode(words)]))[0]
        assert vector.shape == (100,) and 3 <= len(words) <= 5
        # The course's formula: the mean over the words of W^T x_i, x_i one-hot.
        torch.testing.assert_close(vector, (one_hot(vocab, words) @ bag.embedding.weight).mean(0))


def no_position_encoder(**kwargs) -> SelfAttentionEncoder:
    torch.manual_seed(0)
    return SelfAttentionEncoder(8, 16, num_layers=2, num_heads=4, positions="none", **kwargs).eval()


def test_self_attention_without_positions_is_permutation_equivariant():
    encoder = no_position_encoder()
    x, perm = torch.randn(3, 7, 8), torch.randperm(7)
    out, _ = encoder(x)
    permuted, _ = encoder(x[:, perm])
    torch.testing.assert_close(permuted, out[:, perm], rtol=1e-5, atol=1e-5)  # P S(X) = S(P X)
    with_positions = SelfAttentionEncoder(8, 16, num_layers=2, num_heads=4, positions="sinusoidal").eval()
    assert not torch.allclose(with_positions(x[:, perm])[0], with_positions(x)[0][:, perm], atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooled_self_attention_is_permutation_invariant(pooling):
    torch.manual_seed(0)
    net = SequenceClassifierNet(
        3,
        vocab_size=30,
        embed_dim=16,
        cell={"name": "transformer", "positions": "none"},
        hidden_dim=16,
        num_layers=2,
        pooling=pooling,
    ).eval()
    ids, perm = torch.randint(1, 30, (4, 9)), torch.randperm(9)
    torch.testing.assert_close(net(ids[:, perm]), net(ids), rtol=1e-5, atol=1e-5)
    # Sum pooling is mean pooling times the length: invariant as well.
    out, _ = net.encoder(net.embedding(ids))
    out_p, _ = net.encoder(net.embedding(ids[:, perm]))
    torch.testing.assert_close(out_p.sum(1), out.sum(1), rtol=1e-5, atol=1e-5)


def test_position_wise_feed_forward_is_a_kernel_size_one_convolution():
    torch.manual_seed(0)
    ff = PositionwiseFeedForward(8, 32).eval()
    first, second = ff.net[0], ff.net[3]
    conv = nn.Sequential(nn.Conv1d(8, 32, 1), nn.GELU(), nn.Conv1d(32, 8, 1))
    with torch.no_grad():
        conv[0].weight.copy_(first.weight[..., None])
        conv[0].bias.copy_(first.bias)
        conv[2].weight.copy_(second.weight[..., None])
        conv[2].bias.copy_(second.bias)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ff(x), conv(x.transpose(1, 2)).transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_causal_transformer_lm_ignores_the_future_and_remembers_its_context():
    torch.manual_seed(0)
    lm = LanguageModelNet(20, 16, 16, num_layers=2, cell={"name": "transformer", "context": 8}).eval()
    ids = torch.randint(0, 20, (2, 6))
    full, _ = lm(ids)
    changed = ids.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 20
    torch.testing.assert_close(
        lm(changed)[0][:, :4], full[:, :4]
    )  # causal: the future changes nothing before it
    # Feeding the sequence in two chunks with the memory as state gives the same logits as in one go.
    first, state = lm(ids[:, :3])
    second, _ = lm(ids[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-5, atol=1e-5)


def test_transformer_settings_are_checked():
    with pytest.raises(ValueError, match="hidden_dim=10 must be a multiple of num_heads=4"):
        SelfAttentionEncoder(8, 10, num_heads=4)
    with pytest.raises(ValueError, match="positions='rope' is not supported"):
        SelfAttentionEncoder(8, 16, positions="rope")
    with pytest.raises(ValueError, match="bidirectional=true does not apply to cell=transformer"):
        SequenceClassifierNet(2, input_dim=4, cell="transformer", hidden_dim=16, bidirectional=True)


def test_receptive_fields_of_the_course_network():
    rows = receptive_field(
        [
            {"name": "conv1", "kernel": 11, "stride": 4},
            {"name": "pool1", "kernel": 3, "stride": 2},
            {"name": "conv2", "kernel": 5, "padding": 2},
        ],
        input_size=227,
    )
    assert [r["receptive_field"] for r in rows] == [11, 19, 51]
    assert [r["centre"] for r in rows] == [114, 114, 114]
    assert [r["output_size"] for r in rows] == [55, 27, 27] and [r["jump"] for r in rows] == [4, 8, 8]
    assert receptive_field([(3, 1, 1)] * 2, 10)[-1]["receptive_field"] == 5
    with pytest.raises(ValueError, match="kernel 9 does not fit"):
        receptive_field([(9, 1, 0)], 5)


@pytest.fixture
def digit_classifier(make_cfg, tmp_path):
    cfg = make_cfg(
        "experiment=mnist_lstm",
        "debug=limit",
        "data.val_size=40",
        "data.batch_size=16",
        "trainer.max_epochs=6",
        "model.net.hidden_dim=32",
        output_dir=tmp_path / "mnist",
    )
    pipeline.train(cfg)
    return next((tmp_path / "mnist" / "checkpoints").glob("epoch_*.ckpt"))


@pytest.mark.slow
def test_attacks_reach_their_target_or_say_so_and_stay_in_pixel_range(digit_classifier, make_cfg, tmp_path):
    cfg = make_cfg(
        f"ckpt_path={digit_classifier}",
        "n=2",
        "targets=3",
        "steps=300",
        f"out={tmp_path / 'grid.png'}",
        config_name="attack",
    )
    report = attack(cfg)
    assert (tmp_path / "grid.png").stat().st_size > 5000
    assert 0 <= report["targeted"]["success_rate"] <= 1 and report["fgsm_eps0.1"]["mean_linf"] <= 0.1 + 1e-6
    _, datamodule, task = restore.restore_from_checkpoint(digit_classifier)
    task.eval()
    datamodule.setup("test")
    inputs, labels = datamodule.test_set.tensors
    image = datamodule.pixels(inputs[:1])[0]
    torch.testing.assert_close(datamodule.inputs(image[None]), inputs[:1])  # the pixel <-> input maps agree
    model = lambda images: task(datamodule.inputs(images))  # noqa: E731
    label = int(labels[0])
    for target in ((label + 1) % 10, (label + 5) % 10):
        result = targeted(model, image, label, target, steps=200)
        assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
        with torch.no_grad():
            predicted = int(model(result.adversarial[None]).argmax(-1))
        assert predicted == result.predicted and result.success == (predicted == target)
    hit = fgsm(model, image, label, 0.05)
    assert hit.linf <= 0.05 + 1e-6 and hit.adversarial.min() >= 0 and hit.adversarial.max() <= 1
    no_budget = targeted(model, image, label, (label + 1) % 10, steps=0)
    assert not no_budget.success and no_budget.predicted != no_budget.target, "a failure is reported as one"
