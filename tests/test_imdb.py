"""IMDB: text pipeline, vocabulary, cache, batching, models, predict."""

import io
import logging
import tarfile
from pathlib import Path

import pytest
import torch

from seqlab import pipeline
from seqlab.data import DataError, IMDBDataModule
from seqlab.data.imdb_source import safe_extract
from seqlab.data.text import build_vocab, encode, read_csv, tokenize
from seqlab.errors import ConfigError
from seqlab.models import BagOfEmbeddings, SequenceClassifierNet
from seqlab.tools.predict import predict_from_checkpoint as predict
from tests.conftest import make_imdb
from tests.helpers import EXPERIMENTS

IMDB_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("imdb")]
TINY = ["data.val_size=40", "data.batch_size=16", "data.min_freq=1"]


def imdb_dm(root, **kwargs) -> IMDBDataModule:
    dm = IMDBDataModule(str(root), **({"val_size": 40, "batch_size": 16, "min_freq": 1} | kwargs))
    dm.prepare_data()
    dm.setup()
    return dm


def test_tokenizer_rules():
    text = 'A "GREAT" film.<br /><br />Isn\'t it; really: (truly) great, right?!'
    assert tokenize(text) == [
        "a",
        "great",
        "film",
        ".",
        "isn",
        "'",
        "t",
        "it",
        "really",
        "(",
        "truly",
        ")",
        "great",
        ",",
        "right",
        "?",
        "!",
    ]
    assert tokenize("The film is NOT a waste", remove_stop_words=True) == ["film", "not", "waste"]
    assert tokenize("") == [] and tokenize("Ünïcödé ✓ 🎬") == ["ünïcödé", "✓", "🎬"]


def test_vocabulary_min_freq_special_ids_and_unknowns():
    texts = ["good good good bad", "good bad ugly", "bad"]
    vocab = build_vocab(texts, min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "good", "bad"]  # specials first, then by frequency
    assert encode(["ugly good zebra"], vocab) == [[1, 2, 1]]
    assert (
        len(build_vocab(texts, min_freq=1)) == 5
        and build_vocab(texts, min_freq=1, max_size=3).itos[-1] == "good"
    )
    assert encode(["good bad good bad"], vocab, max_length=3) == [[2, 3, 2]]


def test_splits_are_stratified_and_vocab_comes_from_training_only(data_dir):
    dm = imdb_dm(data_dir)
    rows, labels = dm.splits["val"]
    assert len(rows) == 40 and labels.sum() == 20
    assert len(dm.splits["train"][0]) == 160 and len(dm.splits["test"][0]) == 60
    assert dm.dims == {"vocab_size": len(dm.vocab), "num_classes": 2, "pad_id": 0}
    assert dm.vocab.itos[:2] == ["<pad>", "<unk>"]


def test_words_seen_only_outside_the_training_split_are_unknown(tmp_path):
    """The vocabulary is built from the training split alone: a word of the test reviews and one of the
    validation reviews (carved from train.csv) are `<unk>` however often they occur there."""
    root = make_imdb(tmp_path / "data")
    test_csv = root / "imdb" / "test.csv"
    header, *rows = test_csv.read_text().splitlines()
    rows = [row.replace('",', ' testonlyword",', 1) if i < 5 else row for i, row in enumerate(rows)]
    test_csv.write_text("\n".join([header, *rows]) + "\n")  # the word in five test reviews
    assert test_csv.read_text().count("testonlyword") == 5
    dm = imdb_dm(root)
    assert "testonlyword" not in dm.vocab.stoi
    val_ids = {int(i) for row in dm.splits["val"][0] for i in row}
    train_ids = {int(i) for row in dm.splits["train"][0] for i in row}
    assert val_ids - train_ids <= {dm.vocab.stoi["<unk>"]}  # every word id of val also occurs in train
    unk = dm.vocab.stoi["<unk>"]
    assert unk in dm.encode_texts(["a testonlyword film"])[0]


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_side_and_mask(data_dir, side):
    dm = imdb_dm(data_dir, padding_side=side)
    ids, mask = dm.collate([torch.tensor([5, 6, 7]), torch.tensor([8])])
    if side == "right":
        assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    else:
        assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert torch.equal(mask, ids != 0)


def test_bucketing_cuts_padding_and_keeps_every_review(data_dir):
    bucketed, plain = imdb_dm(data_dir, bucket=True), imdb_dm(data_dir, bucket=False)
    padding = {}
    for name, dm in (("bucket", bucketed), ("plain", plain)):
        batches = list(dm.train_dataloader())
        assert sum(len(y) for _, y, _ in batches) == 160
        padding[name] = sum((~m).sum().item() for _, _, m in batches)
    assert padding["bucket"] < padding["plain"] / 2
    fixed = imdb_dm(data_dir, pad_to_max_length=True, max_length=50)
    assert all(x.shape[1] == 50 for x, _, _ in fixed.val_dataloader())


def test_evaluation_batch_size_changes_no_metric(make_cfg, tmp_path):
    """Bigger evaluation batches (bucketed, packed, masked) score every review exactly as small ones do."""
    metrics = {}
    for size in (8, 256):
        cfg = make_cfg(
            "experiment=imdb_lstm",
            "data.min_freq=1",
            "data.batch_size=16",
            "data.val_size=40",
            "debug=limit",
            "trainer.limit_val_batches=1.0",
            "trainer.limit_test_batches=1.0",
            f"data.eval_batch_size={size}",
            output_dir=tmp_path / str(size),
        )
        metrics[size] = {k: v for k, v in pipeline.train(cfg)[1].items() if k != "wall_time_s"}
    assert metrics[8] == pytest.approx(metrics[256], rel=1e-5)


def test_cache_is_reused_and_rebuilt_when_a_setting_changes(tmp_path, monkeypatch):
    root = make_imdb(tmp_path)
    first = imdb_dm(root)
    assert len(list((root / "imdb/cache").glob("*.pt"))) == 1
    built = []
    original = IMDBDataModule._build
    monkeypatch.setattr(IMDBDataModule, "_build", lambda self: built.append(1) or original(self))
    again = imdb_dm(root)
    assert not built and again.vocab.itos == first.vocab.itos
    changed = imdb_dm(root, min_freq=40)
    assert built == [1] and len(changed.vocab) < len(first.vocab)
    assert len(list((root / "imdb/cache").glob("*.pt"))) == 2


def test_unwritable_cache_dir_warns_and_still_works(tmp_path, caplog):
    root = make_imdb(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        dm = imdb_dm(root, cache_dir=str(blocker / "cache"))
    assert len(dm.splits["train"][0]) == 160 and "Could not write the IMDB cache" in caplog.text


def test_hostile_csv_content(tmp_path, caplog):
    folder = tmp_path / "imdb"
    folder.mkdir()
    (folder / "train.csv").write_bytes(b'text,label\n"good \xff\xfe film",pos\n"",0\n"bad",neg\n')
    with caplog.at_level(logging.WARNING):
        texts, labels = read_csv(folder / "train.csv")
    assert labels == [1, 0, 0] and texts[0] == "good \ufffd\ufffd film" and "2 invalid UTF-8" in caplog.text
    (folder / "bad.csv").write_text('text,label\n"fine",1\n"odd",maybe\n')
    with pytest.raises(DataError, match=r"bad.csv, line 3: label 'maybe' is not one of 0, 1, neg, pos"):
        read_csv(folder / "bad.csv")
    (folder / "nocol.csv").write_text("review,label\nx,1\n")
    with pytest.raises(DataError, match="needs a header with columns text,label"):
        read_csv(folder / "nocol.csv")


def test_an_unclosed_quote_is_refused_naming_its_row_instead_of_merging_two_reviews(tmp_path):
    """One unclosed quote merged two reviews into one, silently, the merged one keeping the second's label."""
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"good one",1\n"a great film,1\n"bad movie",0\nfine,1\n')
    with pytest.raises(DataError) as err:
        read_csv(path)
    assert str(err.value).startswith(f"{path}, the row starting on line 3: not valid CSV (")
    assert "a quote opened there is not closed" in str(err.value) and "\n" not in str(err.value)
    path.write_text('text,label\n"a ""quoted"" word, and a comma\nover two lines",1\nok,0\n')
    assert read_csv(path) == (['a "quoted" word, and a comma\nover two lines', "ok"], [1, 0])


def test_empty_reviews_read_as_unk(data_dir, caplog):
    dm = imdb_dm(data_dir)
    with caplog.at_level(logging.WARNING):
        assert dm.encode_texts(["", "great"])[0] == [dm.vocab.unk_id]
    assert "1 empty review(s)" in caplog.text


def test_aclimdb_folder_and_safe_archive(tmp_path, monkeypatch):
    folder = tmp_path / "imdb"
    for split in ("train", "test"):
        for label, words in (("neg", "awful dull"), ("pos", "great fun")):
            d = folder / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i in range(30):
                (d / f"{i}_1.txt").write_text(f"{words} movie number {i}")
    dm = imdb_dm(tmp_path, val_size=10)
    assert len(dm.splits["test"][0]) == 60 and dm.splits["test"][1].tolist() == [0] * 30 + [1] * 30
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"gotcha"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="refusing member '../outside.txt'"):
        safe_extract(evil, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(
        DataError, match=r"(?s)IMDB data not found in .*train.csv and test.csv.*aclImdb_v1.tar.gz"
    ):
        IMDBDataModule(str(tmp_path / "nowhere")).prepare_data()


def test_bag_model_ignores_padding():
    torch.manual_seed(0)
    bag = BagOfEmbeddings(vocab_size=20, num_classes=2, embed_dim=8)
    ids = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[3, 4, 5, 0, 0]])
    torch.testing.assert_close(bag(ids), bag(padded))


@pytest.mark.parametrize("experiment", IMDB_EXPERIMENTS)
def test_every_imdb_experiment_runs_with_fast_dev_run(make_cfg, experiment):
    value, metrics = pipeline.train(make_cfg(f"experiment={experiment}", "debug=fdr", *TINY))
    assert {"val/acc", "val/f1", "val/auroc", "test/acc", "test/f1", "test/auroc"} <= set(metrics)


@pytest.fixture
def trained_bag(make_cfg, tmp_path):
    cfg = make_cfg(
        "experiment=imdb_bag",
        "debug=limit",
        "trainer.max_epochs=8",
        "trainer.limit_train_batches=10",
        *TINY,
        output_dir=tmp_path / "bag",
    )
    _, metrics = pipeline.train(cfg)
    return next((tmp_path / "bag" / "checkpoints").glob("epoch_*.ckpt")), metrics


def test_predict_on_a_saved_checkpoint(trained_bag, make_cfg, tmp_path, capsys):
    ckpt, metrics = trained_bag
    assert metrics["val/acc"] > 0.8  # the tiny corpus is easy: two sentiment words a review
    out = predict(make_cfg(f"ckpt_path={ckpt}", "text='A wonderful, superb film'", config_name="predict"))
    assert out[0][0] == "pos" and 0.5 < out[0][1] <= 1.0
    several = predict(
        make_cfg(f"ckpt_path={ckpt}", "text=['superb, wonderful','awful, boring']", config_name="predict")
    )
    assert [label for label, _ in several] == ["pos", "neg"]
    with pytest.raises(ConfigError, match="holds no reviews"):
        predict(make_cfg(f"ckpt_path={ckpt}", "text=[]", config_name="predict"))
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("an awful boring waste\n\n loved it, great fun \n")
    labels = [
        label for label, _ in predict(make_cfg(f"ckpt_path={ckpt}", f"file={reviews}", config_name="predict"))
    ]
    assert labels == ["neg", "pos"] and "neg\t" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="holds no reviews"):
        predict(make_cfg(f"ckpt_path={ckpt}", f"file={tmp_path / 'empty.txt'}", config_name="predict"))
    with pytest.raises(ConfigError, match="exactly one of"):
        predict(make_cfg(f"ckpt_path={ckpt}", config_name="predict"))


def test_embeddings_tool_works_on_a_text_classifier(trained_bag, make_cfg):
    from seqlab.tools.embeddings import report_embeddings as embeddings

    result = embeddings(
        make_cfg(f"ckpt_path={trained_bag[0]}", "words=[great,awful]", "k=2", config_name="embeddings")
    )
    # The distance is that of the checkpoint's own embedding rows, worked out here by hand.
    checkpoint = torch.load(trained_bag[0], weights_only=True)
    rows = checkpoint["state_dict"]["net.embedding.weight"]
    itos = checkpoint["IMDBDataModule"]["vocab"]["itos"]
    great, awful = rows[itos.index("great")], rows[itos.index("awful")]
    expected = 1 - float(great @ awful / (great.norm() * awful.norm()))
    assert result["pairs"][("great", "awful")] == pytest.approx(expected, abs=1e-6)

    # Its nearest words: itself left out, the k closest of all the others by the same distance.
    def cosine_distance(u: torch.Tensor, v: torch.Tensor) -> float:  # a zero row (<pad>) is at distance 1
        return 1 - float(u @ v) / max(float(u.norm() * v.norm()), 1e-8)

    others = {w: cosine_distance(rows[i], great) for i, w in enumerate(itos) if w != "great"}
    closest = sorted(others.items(), key=lambda item: item[1])[:2]
    assert result["nearest"]["great"] == [(w, pytest.approx(d, abs=1e-5)) for w, d in closest]


def test_predict_refuses_a_language_model(make_cfg, tmp_path):
    cfg = make_cfg(
        "experiment=ptb_lab",
        "debug=limit",
        "model.net.hidden_dim=8",
        "data.seq_len=6",
        "model.truncated_bptt_steps=3",
        output_dir=tmp_path / "lm",
    )
    pipeline.train(cfg)
    ckpt = Path(tmp_path / "lm" / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="predict needs a text classifier checkpoint"):
        predict(make_cfg(f"ckpt_path={ckpt}", "text=hello", config_name="predict"))


def test_bigrams_extend_vocabulary_and_rows():
    from seqlab.data.text import Vocabulary, add_bigram_vocab, add_bigrams

    vocab = Vocabulary(["<pad>", "<unk>", "not", "good", "bad"])
    rows = [[2, 3], [2, 3, 4], [4]]
    extended = add_bigram_vocab(vocab, rows, min_freq=2)
    assert extended.itos == [*vocab.itos, "not good"]  # "good bad" is seen once only
    assert add_bigrams([[2, 3, 2, 3], [3, 4], [4]], extended) == [[2, 3, 2, 3, 5, 5], [3, 4], [4]]


def test_aligned_bigrams_put_beside_each_word_the_known_pair_it_starts():
    from seqlab.data.text import Vocabulary, add_bigram_vocab, align_bigrams

    vocab = add_bigram_vocab(Vocabulary(["<pad>", "<unk>", "not", "good", "bad"]), [[2, 3], [2, 3]], 2)
    not_good = vocab.stoi["not good"]
    aligned = align_bigrams([[2, 3, 4, 2, 3], [3], [4, 2]], vocab)
    assert aligned[0].tolist() == [
        [2, not_good],
        [3, 0],
        [4, 0],
        [2, not_good],
        [3, 0],
    ]  # "good bad": unknown
    assert aligned[1].tolist() == [[3, 0]] and aligned[2].tolist() == [[4, 0], [2, 0]]
    assert align_bigrams([], vocab) == []


def test_aligned_pairs_reach_the_model_as_added_embeddings():
    """(B, T, 2) ids: a step's input is its word's embedding plus its pair's; a pad pair adds nothing."""
    torch.manual_seed(0)
    net = SequenceClassifierNet(2, vocab_size=20, embed_dim=6, hidden_dim=5, pooling="max").eval()
    words = torch.randint(2, 20, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    no_pairs = torch.stack([words, torch.zeros_like(words)], -1)
    assert torch.allclose(net(no_pairs, mask), net(words, mask))
    with_pairs = torch.stack([words, torch.randint(2, 20, (3, 7))], -1)
    assert not torch.allclose(net(with_pairs, mask), net(words, mask))
    bag = BagOfEmbeddings(20, 2).eval()  # the bag reads the pairs as more items of its bag
    assert torch.allclose(bag(with_pairs), bag(with_pairs.flatten(1)))


def test_embed_dropout_drops_words_in_training_only():
    torch.manual_seed(0)
    net = SequenceClassifierNet(2, vocab_size=20, embed_dim=6, hidden_dim=5, embed_dropout=0.5)
    words = torch.randint(2, 20, (3, 7))
    plain = SequenceClassifierNet(2, vocab_size=20, embed_dim=6, hidden_dim=5)
    plain.load_state_dict(net.state_dict())
    assert torch.equal(net.eval()(words), plain.eval()(words))
    assert not torch.equal(net.train()(words), plain.train()(words))
    with pytest.raises(ValueError, match="embed_dropout"):
        SequenceClassifierNet(2, vocab_size=20, embed_dim=6, embed_dropout=1.5)


@pytest.fixture
def encoded(monkeypatch) -> list:
    """What IMDBDataModule.encode_texts returns, call by call (what `predict` feeds the model)."""
    calls = []
    real_encode = IMDBDataModule.encode_texts
    monkeypatch.setattr(
        IMDBDataModule, "encode_texts", lambda dm, texts: calls.append(real_encode(dm, texts)) or calls[-1]
    )
    return calls


def test_aligned_pairs_train_and_predict_from_the_checkpoint(make_cfg, tmp_path, encoded):
    cfg = make_cfg("experiment=imdb_bilstm_pairs", "debug=limit", *TINY, output_dir=tmp_path / "pairs")
    pipeline.train(cfg)
    ckpt = next((tmp_path / "pairs" / "checkpoints").glob("epoch_*.ckpt"))
    out = predict(make_cfg(f"ckpt_path={ckpt}", "text='not good at all'", config_name="predict"))
    assert len(out) == 1 and encoded[0][0].shape == (4, 2)  # the checkpoint's layout: words and pairs


def test_ngrams_setting_reaches_predict_encoding(make_cfg, tmp_path, encoded):
    """A bigram model's checkpoint, through `predict`: the review is encoded with its bigram ids."""
    cfg = make_cfg("experiment=imdb_bag", "debug=limit", *TINY, "data.ngrams=2", output_dir=tmp_path / "bi")
    pipeline.train(cfg)
    ckpt = next((tmp_path / "bi" / "checkpoints").glob("epoch_*.ckpt"))
    itos = torch.load(ckpt, weights_only=True)["IMDBDataModule"]["vocab"]["itos"]
    pair = next(t for t in itos if " " in t)
    predict(make_cfg(f"ckpt_path={ckpt}", f"text='{pair}'", config_name="predict"))
    assert encoded and encoded[0][0][-1] == itos.index(pair)


def test_fixed_length_padding_holds_rows_longer_than_max_length(data_dir):
    dm = imdb_dm(data_dir, ngrams=2, pad_to_max_length=True, max_length=10)
    for ids, _, mask in dm.val_dataloader():
        assert ids.shape[1] == max(10, int(mask.sum(1).max()))
        assert torch.equal(mask, ids != 0)


def test_predict_reads_one_review_per_line_whatever_unicode_line_separators_they_hold(
    trained_bag, make_cfg, tmp_path, capsys
):
    """IMDB's own reviews hold U+0085 (its ellipsis), U+2028 and friends: str.splitlines() splits there too."""
    ckpt, _ = trained_bag
    lines = ["loved it\u0085 great fun", "awful\u2028boring waste", "superb\x1cwonderful\x1dfilm", "dull\r"]
    (tmp_path / "reviews.txt").write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    out = predict(make_cfg(f"ckpt_path={ckpt}", f"file={tmp_path / 'reviews.txt'}", config_name="predict"))
    assert len(out) == 4 and "4 reviews read" in capsys.readouterr().out


def test_predict_on_a_csv_reports_accuracy_and_writes_a_csv(trained_bag, make_cfg, tmp_path, capsys):
    import csv

    ckpt, _ = trained_bag
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [["label", "text"], ["pos", "superb,\nwonderful"], ["0", "awful boring"], ["1", "awful"]]
        )
    out = tmp_path / "predictions.csv"
    predict(make_cfg(f"ckpt_path={ckpt}", f"file={tmp_path / 'in.csv'}", f"out={out}", config_name="predict"))
    printed = capsys.readouterr().out
    assert "3 reviews read" in printed and "accuracy: 0.6667 (2 of 3)" in printed
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == ["superb,\nwonderful", "awful boring", "awful"]
    assert [r["label"] for r in rows] == ["pos", "neg", "neg"] and all(
        0.5 <= float(r["probability"]) <= 1 for r in rows
    )
    (tmp_path / "nolabel.csv").write_text("text\nsuperb wonderful\n")
    predict(make_cfg(f"ckpt_path={ckpt}", f"file={tmp_path / 'nolabel.csv'}", config_name="predict"))
    assert "accuracy" not in capsys.readouterr().out


def test_course_split_pools_all_reviews_seventy_ten_twenty(data_dir):
    dm = imdb_dm(data_dir, split="course")
    sizes = {name: len(dm.splits[name][0]) for name in ("train", "val", "test")}
    assert sizes == {"train": 182, "val": 26, "test": 52}  # 260 reviews: 200 train.csv + 60 test.csv
    official = imdb_dm(data_dir)
    assert len(official.splits["test"][0]) == 60
    other_seed = imdb_dm(data_dir, split="course", split_seed=1)
    assert not torch.equal(other_seed.splits["test"][1], dm.splits["test"][1])
    with pytest.raises(ValueError, match="split='pooled' is not supported; allowed: official, course"):
        imdb_dm(data_dir, split="pooled")
