"""Property-based tests: any text, any bytes, any out-of-range setting gives valid output or one clear error."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqlab import pipeline
from seqlab.data.mnist import read_idx
from seqlab.data.ptb import read_words
from seqlab.data.text import Vocabulary, build_vocab, encode, read_csv
from seqlab.errors import ConfigError, DataError
from seqlab.tools.sample import encode_prompt
from tests.conftest import write_idx
from tests.helpers import seqlab_cli

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VOCAB = build_vocab(["the cat sat on the mat", "a dog ran"], min_freq=1)


@FEW
@given(st.lists(st.text(), min_size=1, max_size=5))
def test_any_unicode_through_the_text_pipeline_gives_valid_ids(texts):
    rows = encode(texts, VOCAB)
    assert len(rows) == len(texts) and all(
        isinstance(i, int) and 0 <= i < len(VOCAB) for r in rows for i in r
    )
    own = build_vocab(texts, min_freq=1)
    assert all(0 <= i < len(own) and i != own.stoi["<unk>"] for r in encode(texts, own) for i in r), (
        "every word of the texts a vocabulary was built from is in it"
    )


@FEW
@given(st.text())
def test_any_prompt_encodes_to_known_ids(prompt):
    vocab = Vocabulary(["<unk>", "<eos>", "the", "cat"])
    assert all(0 <= i < len(vocab) for i in encode_prompt(vocab, prompt))


def read_or_data_error(reader, path: Path):
    """The reader's result, or None when it raised a DataError; any other exception fails the test."""
    try:
        return reader(path)
    except DataError as err:
        assert str(path) in str(err)
        return None


@FEW
@given(raw=st.binary(max_size=300), gz=st.booleans())
def test_random_bytes_as_idx_give_a_data_error(tmp_path_factory, raw, gz):
    path = tmp_path_factory.mktemp("idx") / ("f.idx.gz" if gz else "f.idx")
    path.write_bytes(gzip.compress(raw) if gz and raw[:1] != b"x" else raw)
    out = read_or_data_error(read_idx, path)
    assert out is None or out.dtype == np.uint8


@FEW
@given(cut=st.integers(min_value=0, max_value=10_000), gz=st.booleans(), flip=st.integers(0, 255))
def test_truncated_or_damaged_idx_give_a_data_error(tmp_path_factory, cut, gz, flip):
    folder = tmp_path_factory.mktemp("idx")
    path = write_idx(folder / "images-idx3-ubyte", np.full((5, 28, 28), 7, np.uint8), gz=gz)
    raw = path.read_bytes()
    cut %= len(raw)
    damaged = raw[:cut] if flip % 2 else raw[:cut] + bytes([flip]) + raw[cut + 1 :]
    path.write_bytes(damaged)
    out = read_or_data_error(read_idx, path)
    assert out is None or out.shape == (5, 28, 28)  # one changed pixel byte still parses


@FEW
@given(st.binary(max_size=400))
def test_random_bytes_as_a_ptb_corpus(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("ptb") / "ptb.train.txt"
    path.write_bytes(raw)
    words = read_or_data_error(read_words, path)
    assert words is None or (words and all(isinstance(w, str) and w for w in words))


@FEW
@given(st.one_of(st.binary(max_size=400), st.text(max_size=300).map(lambda t: ("text,label\n" + t).encode())))
def test_random_bytes_as_an_imdb_csv(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("imdb") / "train.csv"
    path.write_bytes(raw)
    out = read_or_data_error(read_csv, path)
    assert out is None or (len(out[0]) == len(out[1]) > 0 and set(out[1]) <= {0, 1})


BAD_VALUES = {
    "data.batch_size": st.integers(max_value=0),
    "data.val_size": st.integers(max_value=-1),
    "model.net.hidden_dim": st.integers(max_value=0),
    "model.net.num_layers": st.integers(max_value=0),
    "model.net.dropout": st.one_of(
        st.floats(min_value=1.0, max_value=1e6), st.floats(max_value=-1e-6, min_value=-1e6)
    ),
    "optimizer.lr": st.floats(max_value=-1e-9, min_value=-1e3),
    "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)),
    "trainer.max_epochs": st.just(0),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_out_of_range_settings_are_named_before_any_work(make_cfg, data):
    key = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(BAD_VALUES[key])
    cfg = make_cfg("experiment=mnist_rnn", f"{key}={value}")
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        pipeline.train(cfg)
    assert not Path(cfg.paths.output_dir).exists(), "nothing was written"


@pytest.mark.slow
def test_an_out_of_range_seed_is_one_line_from_the_command(tmp_path):
    """seed=-1 ended in numpy's traceback (`ValueError: -1 is not in bounds`)."""
    result = seqlab_cli(
        "train", "experiment=mnist_rnn", "seed=-1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: seed=-1: a seed is an integer from 0 to 4294967295 (or null for a random one)"
    )


@pytest.mark.parametrize("tool", ["eval", "predict"])
def test_a_tool_given_an_experiment_says_the_checkpoint_decides(tool, tmp_path):
    result = seqlab_cli(
        tool, "ckpt_path=any.ckpt", "+experiment=mnist_rnn", "data.batch_size=4", cwd=tmp_path
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: +experiment=mnist_rnn: seqlab.{tool} takes the model and data from ckpt_path's run; "
        "experiment, data and model choose them for seqlab.train"
    )
