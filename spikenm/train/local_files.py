"""Readers for datasets a user already has on disk (nothing is ever downloaded).

* MNIST / Fashion-MNIST: IDX files in torchvision's folder layout,
  ``root/MNIST/raw/train-images-idx3-ubyte[.gz]`` (``FashionMNIST`` for Fashion-MNIST),
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
  ``root`` may also be the ``raw`` folder itself.
* CIFAR-10 / CIFAR-100: the official "python version" batches,
  ``root/cifar-10-batches-py/data_batch_1..5`` and ``test_batch``;
  ``root/cifar-100-python/train`` and ``test``.  These files are Python pickles: that is
  the official distribution format, so they are read with `pickle` (``encoding='bytes'``).
  Unpickling can run code -- only point ``root`` at copies you trust.

Every reader returns ``(x, y)`` with ``x`` uint8 ``(N, C, H, W)`` and ``y`` int64 ``(N,)``.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), b"fine_labels"),
}


class MissingDataError(FileNotFoundError):
    """A local dataset folder lacks the files it should hold."""


def _open_maybe_gz(path: Path) -> bytes:
    """Contents of ``path`` or of ``path.gz``."""
    if path.is_file():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    with gzip.open(gz, "rb") as fh:
        return fh.read()


def read_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode an IDX file (big-endian header ``0, 0, type, ndim``, then ``ndim`` int32
    sizes, then the values).  Only unsigned bytes (type ``0x08``) are accepted.

    Examples
    --------
    >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    array([7, 9], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{source} is not an IDX file (bad magic {data[:4]!r})")
    if data[2] != 0x08:
        raise ValueError(f"{source} holds IDX type {data[2]:#04x}; expected 0x08 (uint8)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source} is truncated inside its header")
    shape = tuple(int(v) for v in np.frombuffer(data, ">i4", ndim, 4))
    count = int(np.prod(shape))
    if len(data) != header + count:
        raise ValueError(
            f"{source} has {len(data) - header} data bytes, expected {count} for shape {shape}"
        )
    return np.frombuffer(data, np.uint8, count, header).reshape(shape).copy()


def _idx_folder(root: Path, name: str) -> Path:
    candidates = [root / IDX_FOLDERS[name] / "raw", root / IDX_FOLDERS[name], root]
    for folder in candidates:
        if all(_exists(folder / f) for pair in IDX_FILES.values() for f in pair):
            return folder
    expected = ", ".join(f for pair in IDX_FILES.values() for f in pair)
    raise MissingDataError(
        f"{name}: no IDX files found under {str(root)!r}; expected {expected} "
        f"(optionally .gz) in {str(candidates[0])!r} (torchvision layout) or in the folder "
        f"itself. Nothing is downloaded: copy the files there first."
    )


def _exists(path: Path) -> bool:
    return path.is_file() or path.with_name(path.name + ".gz").is_file()


def load_idx_dataset(root: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the ``train`` or ``test`` split of MNIST or Fashion-MNIST.

    Returns
    -------
    x : uint8 ``(N, 1, 28, 28)``; y : int64 ``(N,)``
    """
    folder = _idx_folder(Path(root), name)
    images_name, labels_name = IDX_FILES[split]
    images = read_idx(_open_maybe_gz(folder / images_name), str(folder / images_name))
    labels = read_idx(_open_maybe_gz(folder / labels_name), str(folder / labels_name))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{folder}: images {images.shape} and labels {labels.shape} do not match; "
            f"expected (N, H, W) and (N,)"
        )
    return images[:, None], labels.astype(np.int64)


def _unpickle(path: Path) -> dict[bytes, object]:
    with path.open("rb") as fh:
        obj = pickle.load(fh, encoding="bytes")  # official CIFAR format (see module doc)
    if not isinstance(obj, dict) or b"data" not in obj:
        raise ValueError(f"{path} is not a CIFAR python batch (no b'data' entry)")
    return obj


def load_cifar(root: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of CIFAR-10 or CIFAR-100 (fine labels) from the python batches.

    Returns
    -------
    x : uint8 ``(N, 3, 32, 32)``; y : int64 ``(N,)``
    """
    folder_name, train_files, test_files, label_key = CIFAR_FILES[name]
    base = Path(root)
    folder = base / folder_name if (base / folder_name).is_dir() else base
    names = train_files if split == "train" else test_files
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        raise MissingDataError(
            f"{name}: missing {', '.join(missing)} in {str(base / folder_name)!r}; expected "
            f"{', '.join(train_files + test_files)} (the official python batches). "
            f"Nothing is downloaded: copy the files there first."
        )
    xs, ys = [], []
    for file_name in names:
        batch = _unpickle(folder / file_name)
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{folder / file_name}: data {data.shape} / labels {labels.shape}; expected "
                f"(N, 3072) uint8 and (N,)"
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)
