import gzip

import numpy as np
import pytest
import torch

from seqlab.data import DataError, MNISTDataModule
from seqlab.data.mnist import read_idx
from tests.conftest import make_mnist, write_idx


def setup_dm(data_dir, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(str(data_dir), val_size=40, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize(
    "view,shape", [("rows", (28, 28)), ("pixels", (784, 1)), ("permuted_pixels", (784, 1))]
)
def test_views_have_the_right_shapes(data_dir, view, shape):
    dm = setup_dm(data_dir, view=view, batch_size=16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, *shape) and x.dtype == torch.float32 and y.shape == (16,)
    assert dm.dims == {"input_dim": shape[1], "num_classes": 10}
    assert len(dm.train_set) == 200 and len(dm.val_set) == 40 and len(dm.test_set) == 60


def test_evaluation_batches_have_their_own_size(data_dir):
    dm = setup_dm(data_dir, batch_size=16, eval_batch_size=25)
    assert [len(y) for _, y in dm.val_dataloader()] == [25, 15]
    assert [len(y) for _, y in dm.test_dataloader()] == [25, 25, 10]
    assert {len(y) for _, y in dm.train_dataloader()} == {16, 200 % 16}
    assert setup_dm(data_dir, batch_size=16).eval_batch_size == 16  # null: the training batch size


def test_test_split_keeps_file_order_and_pixels(data_dir):
    dm = setup_dm(data_dir, view="pixels", batch_size=7)
    labels = read_idx(data_dir / "MNIST/raw/t10k-labels-idx1-ubyte.gz")
    images = read_idx(data_dir / "MNIST/raw/t10k-images-idx3-ubyte.gz")
    xs, ys = zip(*dm.test_dataloader(), strict=True)
    assert torch.equal(torch.cat(ys), torch.from_numpy(labels.astype(np.int64)))
    rows = setup_dm(data_dir, view="rows").test_set.tensors[0]
    # pixels is the row-major flattening of rows; both undo to the original bytes
    assert torch.equal(torch.cat(xs).reshape(-1, 28, 28), rows)
    restored = (rows * 0.3081 + 0.1307) * 255
    assert torch.allclose(restored, torch.from_numpy(images.copy()).float(), atol=1e-3)


def test_permutation_is_fixed_by_its_seed(data_dir):
    a, b = (setup_dm(data_dir, view="permuted_pixels", permutation_seed=3) for _ in range(2))
    c = setup_dm(data_dir, view="permuted_pixels", permutation_seed=4)
    plain = setup_dm(data_dir, view="pixels")
    assert torch.equal(a.permutation, b.permutation) and not torch.equal(a.permutation, c.permutation)
    assert sorted(a.permutation.tolist()) == list(range(784))
    assert torch.equal(a.test_set.tensors[0], plain.test_set.tensors[0][:, a.permutation])


def test_split_is_seeded_and_disjoint_and_subset_takes_the_first(data_dir):
    a, b = setup_dm(data_dir, split_seed=1), setup_dm(data_dir, split_seed=1)
    c = setup_dm(data_dir, split_seed=2)
    assert torch.equal(a.val_set.tensors[1], b.val_set.tensors[1])
    assert not torch.equal(a.val_set.tensors[0], c.val_set.tensors[0])
    everything = {x.numpy().tobytes() for x in torch.cat([a.train_set.tensors[0], a.val_set.tensors[0]])}
    assert len(everything) == 240
    sub = setup_dm(data_dir, split_seed=1, train_subset=50)
    assert torch.equal(sub.train_set.tensors[0], a.train_set.tensors[0][:50])


def test_plain_idx_files_are_read_too(tmp_path):
    root = make_mnist(tmp_path)
    for path in (root / "MNIST/raw").glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert len(setup_dm(root).test_set) == 60


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda raw: b"\x00\x00\x08\x09" + raw[4:], "not an IDX file"),
        (lambda raw: raw[:-100], "header says shape"),
        (lambda raw: raw[:10], "truncated header|header says shape"),
        (lambda raw: b"", "not an IDX file"),
    ],
)
def test_corrupt_idx_files_give_clear_errors(tmp_path, damage, message):
    root = make_mnist(tmp_path)
    path = root / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(DataError, match=message):
        setup_dm(root)


def test_broken_gzip_and_mismatched_counts(tmp_path):
    root = make_mnist(tmp_path)
    path = root / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="corrupt"):
        setup_dm(root)
    write_idx(root / "MNIST/raw/t10k-labels-idx1-ubyte", np.zeros(59, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        setup_dm(root)


def test_missing_files_without_network_name_folder_and_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    dm = MNISTDataModule(str(tmp_path))
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    text = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in text and "train-images-idx3-ubyte.gz" in text
    assert "network is unreachable" in text
    assert not list((tmp_path / "MNIST" / "raw").glob("*")), "no partial download is left behind"


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: io.BytesIO(b"not mnist"))
    with pytest.raises(DataError, match="checksum mismatch"):
        MNISTDataModule(str(tmp_path)).prepare_data()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"view": "columns"}, "view='columns'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"eval_batch_size": -1}, "eval_batch_size=-1"),
        ({"train_subset": 0}, "train_subset"),
    ],
)
def test_bad_data_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNISTDataModule(str(tmp_path), **kwargs)
