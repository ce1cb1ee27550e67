"""Shipped datasets, local-folder loaders and input encoding (SPEC S4.7)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from spikenm.train.config import DataConfig
from spikenm.train.data import SPLIT_SEED, TEST_FRACTION, load_dataset, stratified_split
from spikenm.train.encoding import encode, poisson_spikes
from spikenm.train.local_files import MissingDataError, read_idx


@pytest.mark.parametrize("name, shape, count, pixel_max", [
    ("digits", (1, 8, 8), 1797, 16.0), ("mnist5k", (1, 28, 28), 5000, 255.0)])
def test_shipped_sets(name, shape, count, pixel_max) -> None:
    ds = load_dataset(DataConfig(name=name))
    assert ds.input_shape == shape and ds.pixel_max == pixel_max and ds.num_classes == 10
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == count
    assert ds.x_train.shape[0] == ds.y_train.shape[0]
    assert ds.x_train.max() <= pixel_max
    assert set(np.unique(ds.y_test).tolist()) == set(range(10))
    # stratified: every class has about 20% of its samples in the test split
    for c in range(10):
        frac = (ds.y_test == c).sum() / ((ds.y_test == c).sum() + (ds.y_train == c).sum())
        assert abs(frac - TEST_FRACTION) < 0.02
    again = load_dataset(DataConfig(name=name))
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_digits_split_matches_the_written_rule() -> None:
    import sklearn.datasets as sk
    digits = sk.load_digits()
    tr, te = stratified_split(digits.target, TEST_FRACTION, SPLIT_SEED)
    ds = load_dataset(DataConfig(name="digits"))
    assert np.array_equal(ds.x_test[:, 0], digits.images[te].astype(np.uint8))
    assert np.array_equal(ds.y_train, digits.target[tr])


def test_stratified_split_is_deterministic_and_disjoint() -> None:
    labels = np.repeat(np.arange(3), 10)
    a = stratified_split(labels, 0.3, seed=5)
    b = stratified_split(labels, 0.3, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == 30
    assert np.bincount(labels[a[1]]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.5, 0)


def test_limits() -> None:
    ds = load_dataset(DataConfig(name="digits", train_limit=100, test_limit=30))
    assert ds.x_train.shape[0] == 100 and ds.x_test.shape[0] == 30


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("name, folder, compress", [
    ("mnist", "MNIST", False), ("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", True)])
def test_idx_folder_in_torchvision_layout(tmp_path, name, folder, compress) -> None:
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(12) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(5),
    }
    for fname, arr in files.items():
        data = _idx(arr)
        if compress:
            (raw / (fname + ".gz")).write_bytes(gzip.compress(data))
        else:
            (raw / fname).write_bytes(data)
    ds = load_dataset(DataConfig(name=name, root=str(tmp_path)))
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert np.array_equal(ds.x_train[:, 0], files["train-images-idx3-ubyte"])
    assert ds.y_test.tolist() == [0, 1, 2, 3, 4] and ds.pixel_max == 255.0


def test_idx_decoder_errors() -> None:
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="0x0d"):
        read_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1]))


def _cifar_batch(path, n, label_key, rng) -> None:
    batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             label_key: list(rng.integers(0, 10, n))}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)


def test_cifar10_and_cifar100_batches(tmp_path) -> None:
    rng = np.random.default_rng(1)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for i in range(1, 6):
        _cifar_batch(c10 / f"data_batch_{i}", 4, b"labels", rng)
    _cifar_batch(c10 / "test_batch", 3, b"labels", rng)
    ds = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.num_classes == 10 and ds.x_train.dtype == np.uint8
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    _cifar_batch(c100 / "train", 6, b"fine_labels", rng)
    _cifar_batch(c100 / "test", 2, b"fine_labels", rng)
    ds = load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.num_classes == 100


@pytest.mark.parametrize("name, expected", [
    ("mnist", "train-images-idx3-ubyte"), ("fashion_mnist", "t10k-labels-idx1-ubyte"),
    ("cifar10", "data_batch_1"), ("cifar100", "cifar-100-python")])
def test_missing_local_data_names_expected_files(tmp_path, name, expected) -> None:
    with pytest.raises(MissingDataError) as info:
        load_dataset(DataConfig(name=name, root=str(tmp_path)))
    assert expected in str(info.value) and "downloaded" in str(info.value)


def test_local_dataset_without_root() -> None:
    with pytest.raises(ValueError, match="data.root"):
        load_dataset(DataConfig(name="cifar10"))


def test_encoding_direct_and_poisson() -> None:
    images = np.array([[[[0, 255], [128, 64]]]], dtype=np.uint8)
    x = encode(images, 255.0, "float32", "direct", 4, 0, 0)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    assert x[0, 0, 0, 1] == 1.0 and x[0, 0, 0, 0] == 0.0
    s = encode(images, 255.0, "float64", "poisson", 5, 0, 3)
    assert s.shape == (5, 1, 1, 2, 2) and s.dtype == np.float64
    assert (s[:, 0, 0, 0, 0] == 0).all() and (s[:, 0, 0, 0, 1] == 1).all()
    assert np.array_equal(s, encode(images, 255.0, "float64", "poisson", 5, 0, 3))
    rate = poisson_spikes(np.full((2000,), 0.3), 4, seed=1, step=0).mean()
    assert abs(rate - 0.3) < 0.02
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(images, 255.0, "float32", "latency", 4, 0, 0)


def test_cifar100_in_the_official_python_format(tmp_path) -> None:
    """The cifar-100-python files as distributed: protocol-2 pickles of a dict with
    b'filenames', b'batch_label', b'fine_labels', b'coarse_labels' and b'data' (uint8
    rows of 1024 red, 1024 green, 1024 blue values, each 32x32 row-major)."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 5), ("test", 3)):
        data = np.zeros((n, 3072), np.uint8)
        for i in range(n):
            data[i, :1024], data[i, 1024:2048], data[i, 2048:] = 10 + i, 20 + i, 30 + i
            data[i, 1] = 200  # red channel, row 0, column 1
        batch = {b"filenames": [f"img_{i}.png".encode() for i in range(n)],
                 b"batch_label": f"{name} batch 1 of 1".encode(),
                 b"fine_labels": [99 - i for i in range(n)],
                 b"coarse_labels": [19 - i for i in range(n)], b"data": data}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"apple"]}, protocol=2))
    ds = load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))
    assert ds.x_train.shape == (5, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.num_classes == 100 and ds.pixel_max == 255.0
    assert ds.y_train.tolist() == [99, 98, 97, 96, 95] and ds.y_train.dtype == np.int64
    assert ds.x_train[2, 0, 5, 5] == 12 and ds.x_train[2, 1, 5, 5] == 22
    assert ds.x_train[2, 2, 31, 31] == 32 and ds.x_train[0, 0, 0, 1] == 200
    assert ds.x_test[1, 2, 0, 0] == 31
