"""Readers for datasets a user already has on disk (nothing is ever downloaded).

* MNIST / Fashion-MNIST: IDX files in torchvision's folder layout,
  ``root/MNIST/raw/train-images-idx3-ubyte[.gz]`` (``FashionMNIST`` for Fashion-MNIST),
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
  ``root`` may also be the ``raw`` folder itself.
* CIFAR-10 / CIFAR-100: the official "python version" batches,
  ``root/cifar-10-batches-py/data_batch_1..5`` and ``test_batch``;
  ``root/cifar-100-python/train`` and ``test``.  These files are Python pickles (the
  official distribution format), read with a restricted unpickler (below).

Every reader returns ``(x, y)`` with ``x`` uint8 ``(N, C, H, W)`` and ``y`` int64 ``(N,)``.

The files are untrusted (SPEC S3.11): an IDX header's sizes are checked against the file
(or, gzipped, against `spikenm.container.inflate_limit` of the compressed size) before
anything is allocated, and a gzip stream is read no further than its declared size; the
CIFAR pickles are scanned first (opcode lengths and memo indices within the file) and then
read by an unpickler that builds only dicts, lists, bytes, numbers and numeric NumPy
arrays (any other class or function in the file is refused, so unpickling runs no code of
the file's choosing); labels must lie in ``[0, classes)``, pixels in
``[0, 255]``, shapes as above with ``N >= 1``.  Every failure is a ``ValueError`` naming the
file and the value (or `MissingDataError` for missing files).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..container import inflate_advice, inflate_limit, loader_boundary

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_IMAGE = (28, 28)
"""Height and width of MNIST and Fashion-MNIST images."""
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), b"fine_labels"),
}
CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
CIFAR_ROW = 3 * 32 * 32


class MissingDataError(FileNotFoundError):
    """A local dataset folder lacks the files it should hold."""


def _read_exact(fh: BinaryIO, count: int, source: str, part: str) -> bytes:
    out = bytearray()
    while len(out) < count:
        chunk = fh.read(min(count - len(out), 1 << 22))
        if not chunk:
            raise ValueError(f"{source} is truncated: {part} ends after {len(out)} of "
                             f"{count} bytes")
        out += chunk
    return bytes(out)


def _read_idx_stream(fh: BinaryIO, source: str, budget: int | None) -> np.ndarray:
    """IDX array from ``fh``: header, then exactly the declared number of bytes, then the
    end.  ``budget`` bounds the declared size (None: ``fh`` is a plain file whose size
    was checked by the caller)."""
    head = fh.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(f"{source} is not an IDX file (bad magic {head[:4]!r})")
    if head[2] != 0x08:
        raise ValueError(f"{source} holds IDX type {head[2]:#04x}; expected 0x08 (uint8)")
    ndim = head[3]
    if ndim == 0:
        raise ValueError(f"{source} declares 0 dimensions; expected at least one")
    sizes = fh.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(f"{source} is truncated inside its header")
    shape = tuple(int(v) for v in np.frombuffer(sizes, ">i4", ndim))
    if any(s < 0 for s in shape):
        raise ValueError(f"{source} declares shape {shape}; expected non-negative sizes")
    count = math.prod(shape)
    if budget is not None and count > budget:
        raise ValueError(f"{source} declares shape {shape} ({count} bytes): "
                         + inflate_advice(count, budget))
    data = _read_exact(fh, count, source, f"the data of shape {shape}")
    if fh.read(1):
        raise ValueError(f"{source} has more than the {count} data bytes of shape {shape}")
    return np.frombuffer(data, np.uint8, count).reshape(shape).copy()


def read_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode an IDX file (big-endian header ``0, 0, type, ndim``, then ``ndim`` int32
    sizes, then the values).  Only unsigned bytes (type ``0x08``) are accepted, and the
    data must be exactly the declared size.

    Examples
    --------
    >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    array([7, 9], dtype=uint8)
    """
    if len(data) >= 4 and data[:3] == b"\x00\x00\x08" and len(data) >= 4 + 4 * data[3]:
        shape = tuple(int(v) for v in np.frombuffer(data, ">i4", data[3], 4))
        count, header = math.prod(shape), 4 + 4 * data[3]
        if shape and len(data) != header + count:
            raise ValueError(f"{source} has {len(data) - header} data bytes, expected "
                             f"{count} for shape {shape}")
    return _read_idx_stream(io.BytesIO(data), source, None)


def read_idx_file(path: Path) -> np.ndarray:
    """The IDX array in ``path``, or in ``path.gz`` (gzip, read no further than the
    declared size, which must be within `spikenm.container.inflate_limit` of the
    compressed size)."""
    if path.is_file():
        source = str(path)
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return _read_idx_stream(fh, source, max(size, 0))
    gz = path.with_name(path.name + ".gz")
    source = str(gz)
    with open(gz, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                return _read_idx_stream(fh, source, inflate_limit(size))
        except (OSError, EOFError) as exc:  # BadGzipFile, CRC or length check, truncation
            raise ValueError(f"{source} is not a readable gzip file "
                             f"({type(exc).__name__}: {exc})") from None


def _check_labels(labels: np.ndarray, classes: int, source: str) -> np.ndarray:
    """int64 copy of 1-D integer ``labels`` in ``[0, classes)``."""
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ValueError(f"{source}: labels are {labels.dtype} {labels.shape}; expected a 1-D "
                         f"integer array")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{source}: label {i} is {labels[i]}; expected a class in "
                         f"[0, {classes})")
    return labels.astype(np.int64)


def _check_pixels(pixels: np.ndarray, source: str) -> np.ndarray:
    """uint8 copy of integer ``pixels`` in ``[0, 255]`` (no wrapping)."""
    if pixels.dtype.kind not in "iu":
        raise ValueError(f"{source}: pixels are {pixels.dtype}; expected integers in [0, 255]")
    if pixels.dtype != np.uint8 and pixels.size:
        bad = np.flatnonzero((pixels < 0) | (pixels > 255))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{source}: pixel {i} (flat index) is {pixels.flat[i]}; expected "
                             f"an integer in [0, 255]")
    return pixels.astype(np.uint8)


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
    x : uint8 ``(N, 1, 28, 28)``; y : int64 ``(N,)`` in ``[0, 10)``

    Raises
    ------
    MissingDataError
        A file is missing (the message names the expected files).
    ValueError
        A file that is not such an IDX file, naming the file and the value.
    """
    folder = _idx_folder(Path(root), name)
    images_name, labels_name = IDX_FILES[split]
    with loader_boundary(str(folder / images_name), "IDX image file"):
        images = read_idx_file(folder / images_name)
        if images.ndim != 3 or images.shape[1:] != IDX_IMAGE or images.shape[0] == 0:
            raise ValueError(f"{folder / images_name}: images have shape {images.shape}; "
                             f"expected (N, {IDX_IMAGE[0]}, {IDX_IMAGE[1]}) with N >= 1")
    with loader_boundary(str(folder / labels_name), "IDX label file"):
        labels = read_idx_file(folder / labels_name)
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{folder / labels_name}: labels have shape {labels.shape}; "
                             f"expected ({images.shape[0]},), one per image of "
                             f"{folder / images_name}")
        labels = _check_labels(labels, CLASSES[name], str(folder / labels_name))
    return images[:, None], labels


MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}
"""Pickle opcodes with an explicit memo index: the unpickler sizes its memo by the
largest, so an index is refused unless it is below the file's length."""


class _NDArray:
    """Stands for ``numpy.ndarray`` inside a CIFAR pickle (only `_reconstruct` takes it)."""


def _numeric_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
        raise pickle.UnpicklingError(f"dtype {dtype} is not a numeric dtype")
    return dtype


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NDArray or shape != (0,) or typecode != b"b":
        raise pickle.UnpicklingError(f"unexpected array reconstruction {shape!r}, "
                                     f"{typecode!r}")
    return np.ndarray((0,), np.uint8)


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or \
            not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(f"unexpected NumPy scalar of dtype {dtype!r}")
    return np.frombuffer(data, dtype)[0]


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Builds only plain containers, numbers, bytes and numeric arrays (S3.11)."""

    ALLOWED = {("_codecs", "encode"): _latin1, ("numpy", "ndarray"): _NDArray,
               ("numpy", "dtype"): _numeric_dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        ALLOWED[(module, "_reconstruct")] = _reconstruct
        ALLOWED[(module, "scalar")] = _scalar

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the file refers to {module}.{name}; a CIFAR batch holds only dicts, "
                f"lists, bytes, numbers and NumPy arrays") from None


def _unpickle(path: Path) -> dict[bytes, object]:
    data = path.read_bytes()
    try:
        for opcode, arg, pos in pickletools.genops(data):  # opcodes and lengths checked
            if opcode.name in MEMO_OPS and arg is not None and not 0 <= arg < len(data):
                raise ValueError(f"memo index {arg} at byte {pos} is beyond the "
                                 f"{len(data)}-byte file")
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable CIFAR python batch (a pickle: {exc})"
                         ) from None
    obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(obj, dict) or b"data" not in obj:
        raise ValueError(f"{path} is not a CIFAR python batch (no b'data' entry)")
    return obj


def _cifar_batch(path: Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    where = str(path)
    with loader_boundary(where, "CIFAR python batch"):
        batch = _unpickle(path)
        if label_key not in batch:
            raise ValueError(f"{where} has no {label_key!r} entry; found "
                             f"{sorted(map(repr, batch))[:6]}")
        data, labels = batch[b"data"], batch[label_key]
        if not isinstance(data, np.ndarray):
            raise ValueError(f"{where}: b'data' is a {type(data).__name__}; expected a "
                             f"(N, {CIFAR_ROW}) uint8 array")
        if not isinstance(labels, (list, np.ndarray)):
            raise ValueError(f"{where}: {label_key!r} is a {type(labels).__name__}; expected "
                             f"a list of integers")
        if isinstance(labels, list) and not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
            raise ValueError(f"{where}: {label_key!r} holds values other than integers")
        labels = np.asarray(labels) if len(labels) else np.zeros(0, np.int64)
        if data.ndim != 2 or data.shape[1] != CIFAR_ROW or data.shape[0] == 0 or \
                labels.shape != data.shape[:1]:
            raise ValueError(f"{where}: data {data.shape} / labels {labels.shape}; expected "
                             f"(N, {CIFAR_ROW}) uint8 and (N,) with N >= 1")
        pixels = _check_pixels(data, where)
        return pixels.reshape(-1, 3, 32, 32), _check_labels(labels, classes, where)


def load_cifar(root: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of CIFAR-10 or CIFAR-100 (fine labels) from the python batches.

    Returns
    -------
    x : uint8 ``(N, 3, 32, 32)``; y : int64 ``(N,)`` in ``[0, classes)``

    Raises
    ------
    MissingDataError
        A file is missing (the message names the expected files).
    ValueError
        A file that is not such a batch, naming the file and the value.
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
        x, y = _cifar_batch(folder / file_name, label_key, CLASSES[name])
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
