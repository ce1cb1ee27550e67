"""The on-disk container of a `Packed` array (SPEC S3.5).

A ``.npz`` archive (read with ``allow_pickle=False``) of exactly these entries:

==========  ==================================================================
format      0-d unicode ``"spikenm.packed"``
version     0-d integer ``1``
n, m        0-d integers, the pattern (SPEC S0.1, ``m <= 256``)
shape       1-D integers, the dense shape
axis        0-d integer in ``[0, len(shape))``, the block axis
dtype       0-d unicode, the values' dtype name (``"bfloat16"`` included)
values      ``(*lead, G * n)`` little-endian, of ``dtype`` (bfloat16 as ``uint16`` bits)
indices     ``(*lead, G * n)`` ``uint8``, in ``[0, m)``, strictly increasing per block
sha256      0-d unicode, 64 lowercase hex digits
==========  ==================================================================

``sha256 = SHA-256(header + values bytes + indices bytes)`` where ``header`` is the UTF-8
JSON ``{"axis":..,"dtype":..,"format":..,"m":..,"n":..,"shape":[..],"version":..}`` with
sorted keys and no spaces, and the array bytes are C-ordered little-endian.

Reading trusts nothing (SPEC S3.11): `NpzFile` checks the zip directory, every ``.npy``
header against its member's size (and the caller's expectations) before allocating, the
decompressed sizes against `inflate_limit`, and each member's CRC-32; `loader_boundary`
lets only the documented exceptions leave a loader, naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .atomic import atomic_path
from .dispatch import backend_for
from .packed import Packed

FORMAT = "spikenm.packed"
VERSION = 1
FIELDS = ("format", "version", "n", "m", "shape", "axis", "dtype", "values", "indices", "sha256")
STORAGE = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "float16", "float32", "float64",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    )
}
"""dtype names the container holds, and the NumPy dtype their values are stored as."""
STORAGE["bfloat16"] = np.dtype("<u2")


def checksum(
    header: dict[str, Any], values: np.ndarray, indices: np.ndarray
) -> str:
    """Hex SHA-256 of the canonical header and the little-endian bytes of the arrays.

    ``header`` holds ``axis, dtype, format, m, n, shape, version``; it is written as JSON
    with sorted keys and separators ``,`` and ``:``.

    Examples
    --------
    >>> import numpy as np
    >>> h = dict(format=FORMAT, version=1, n=1, m=2, shape=[2], axis=0, dtype="uint8")
    >>> len(checksum(h, np.array([3], np.uint8), np.array([1], np.uint8)))
    64
    """
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8"))
    for a in (values, indices):
        digest.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def _header(packed: Packed, dtype: str) -> dict[str, Any]:
    return dict(
        format=FORMAT, version=VERSION, n=int(packed.n), m=int(packed.m),
        shape=[int(s) for s in packed.shape], axis=int(packed.axis), dtype=dtype,
    )


def _packed_shape(shape: tuple[int, ...], axis: int, n: int, m: int) -> tuple[int, ...]:
    lead = shape[:axis] + shape[axis + 1:]
    return (*lead, shape[axis] // m * n)


def _check_indices(indices: np.ndarray, n: int, m: int, where: str) -> None:
    """Indices in ``[0, m)`` and strictly increasing within each block of ``n``: one
    fused pass (`spikenm.reference.packing.first_bad_block`); only a file that fails it
    is examined again to name what is wrong."""
    from .reference.packing import first_bad_block

    if first_bad_block(indices, n, m) < 0:
        return
    flat = indices.reshape(-1, n).astype(np.int64)
    bad = np.argwhere(flat >= m)
    if bad.size:
        raise ValueError(
            f"{where}: indices hold {int(flat[tuple(bad[0])])} (flat block {int(bad[0][0])}); "
            f"expected values in [0, {m})"
        )
    if n > 1:
        bad = np.argwhere(np.diff(flat, axis=1) <= 0)
        if bad.size:
            b = int(bad[0][0])
            raise ValueError(
                f"{where}: indices of flat block {b} are {flat[b].tolist()}; expected "
                f"strictly increasing indices within each block"
            )


def numpy_bfloat16(purpose: str) -> Any:
    """NumPy's bfloat16 scalar type (from ml_dtypes), or an ImportError saying why it is
    needed (``purpose``) and how to install it."""
    try:
        import ml_dtypes
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{purpose} needs ml_dtypes (pip install ml_dtypes)") from exc
    return ml_dtypes.bfloat16


def check_layout(
    shape: tuple[int, ...], axis: int, n: int, m: int, values: np.ndarray,
    indices: np.ndarray, where: str,
) -> None:
    """Pattern, shape, axis and array shapes agree (SPEC S3.1)."""
    check_pattern(shape, axis, n, m, where)
    expected = _packed_shape(shape, axis, n, m)
    for field, a in (("values", values), ("indices", indices)):
        if tuple(a.shape) != expected:
            raise ValueError(
                f"{where}: {field} have shape {tuple(a.shape)}; expected {expected} for dense "
                f"shape {shape}, axis {axis} and {n}:{m}"
            )
    if indices.dtype != np.uint8:
        raise ValueError(f"{where}: indices are {indices.dtype}; expected uint8")
    _check_indices(indices, n, m, where)


def check_pattern(shape: tuple[int, ...], axis: int, n: int, m: int, where: str) -> None:
    """Pattern, shape and axis agree (SPEC S3.1), before any array is looked at."""
    if not (1 <= n <= m and 2 <= m <= 256):
        raise ValueError(f"{where}: n:m = {n}:{m}; expected 1 <= n <= m and 2 <= m <= 256")
    if len(shape) == 0 or any(s < 0 for s in shape):
        raise ValueError(f"{where}: shape {shape}; expected at least one non-negative length")
    if not 0 <= axis < len(shape):
        raise ValueError(f"{where}: axis {axis} is out of range for shape {shape}")
    if shape[axis] == 0 or shape[axis] % m:
        raise ValueError(
            f"{where}: shape {shape} has {shape[axis]} entries along axis {axis}; expected a "
            f"positive multiple of m={m}"
        )


def save_packed(path: str | os.PathLike[str], packed: Packed) -> None:
    """Write ``packed`` to ``path`` as a checksummed ``.npz`` container (SPEC S3.5).

    The file is written to a temporary file in the same directory and moved into place
    with ``os.replace``, so ``path`` never holds a partial container.  The name is used
    as given (no ``.npz`` is appended).  ``packed`` is validated first (the same checks
    as `load_packed`), so only valid containers are written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from spikenm.api import pack
    >>> p = pack(np.array([[0.0, 5.0, 0.0, 7.0]]), 2, 4)
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_packed(path, p)
    >>> load_packed(path).values
    array([[5., 7.]])
    """
    if not isinstance(packed, Packed):
        raise TypeError(f"expected a spikenm Packed, got {type(packed).__name__}")
    be = backend_for(values=packed.values, indices=packed.indices)
    dtype = be.dtype_name(packed.values)
    if dtype not in STORAGE:
        raise TypeError(
            f"the container stores values of dtype {sorted(STORAGE)}, got {dtype}"
        )
    values = be.to_numpy(packed.values).astype(STORAGE[dtype])
    indices = be.to_numpy(packed.indices)
    shape = tuple(int(s) for s in packed.shape)
    check_layout(shape, int(packed.axis), int(packed.n), int(packed.m), values, indices,
                  "packed")
    header = _header(packed, dtype)
    fields: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(VERSION, dtype=np.int64),
        "n": np.array(header["n"], dtype=np.int64), "m": np.array(header["m"], dtype=np.int64),
        "shape": np.array(header["shape"], dtype=np.int64).reshape(-1),
        "axis": np.array(header["axis"], dtype=np.int64), "dtype": np.array(dtype),
        "values": values, "indices": indices,
        "sha256": np.array(checksum(header, values, indices)),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **fields)


# -- untrusted files: bounded reading (SPEC S3.11) ------------------------------------------

INFLATE_RATIO = 100
"""Default of the decompression bound (S3.11): the compressed members of one file may decode
to at most ``INFLATE_FLOOR + INFLATE_RATIO * (their compressed bytes)`` bytes."""
INFLATE_FLOOR = 64 * 2**20
INFLATE_RATIO_ENV = "SPIKENM_MAX_INFLATE_RATIO"
"""Environment variable that replaces `INFLATE_RATIO` (a positive integer), for a genuine
file that compresses better than that."""
MAX_NPY_HEADER = 10_000
MAX_NDIM = 32
NPY_KINDS = "biufcU"
"""dtype kinds an untrusted ``.npy`` entry may hold (no objects, records, voids or times)."""
DOCUMENTED = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError)
"""The exception types a loader lets escape (S3.11)."""


def inflate_limit(compressed: int) -> int:
    """Most bytes that ``compressed`` bytes of deflate/gzip data may decode to (S3.11).

    ``INFLATE_FLOOR + ratio * compressed`` with ``ratio`` from ``$SPIKENM_MAX_INFLATE_RATIO``
    (default `INFLATE_RATIO`).

    Examples
    --------
    >>> inflate_limit(0) == INFLATE_FLOOR
    True
    """
    text = os.environ.get(INFLATE_RATIO_ENV, "").strip()
    ratio = INFLATE_RATIO
    if text:
        try:
            ratio = int(text)
        except ValueError:
            ratio = 0
        if ratio <= 0:
            raise ValueError(f"{INFLATE_RATIO_ENV}={text!r}; expected a positive integer "
                             f"(decoded bytes per compressed byte)")
    return INFLATE_FLOOR + ratio * int(compressed)


def inflate_advice(decoded: int, compressed: int) -> str:
    """The sentence of an error for data that would decode beyond `inflate_limit`."""
    return (f"{decoded} decoded bytes from {compressed} compressed bytes exceed the limit of "
            f"{inflate_limit(compressed)} ({INFLATE_FLOOR // 2**20} MiB + "
            f"{os.environ.get(INFLATE_RATIO_ENV) or INFLATE_RATIO} x compressed bytes); for "
            f"a genuine file this compressible set {INFLATE_RATIO_ENV} to a larger ratio")


@contextmanager
def loader_boundary(where: str, what: str) -> Iterator[None]:
    """Let only the documented exceptions (`DOCUMENTED`) leave a loader (S3.11).

    A ``ValueError`` that does not name ``where`` gets it as a prefix; any other
    exception (``MemoryError``, ``RecursionError``, an ``OSError`` other than the three
    documented ones, an error of a parsing library) becomes a ``ValueError`` naming
    ``where``, ``what`` it should be, and the original exception.
    """
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except ValueError as exc:
        if where in str(exc):
            raise
        raise ValueError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the boundary: translate every other failure
        raise ValueError(f"{where} is not a readable {what} ({type(exc).__name__}: {exc})"
                         ) from None


def _corrupt(where: str, exc: BaseException | str) -> ValueError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return ValueError(f"{where} is truncated or corrupt, not a readable .npz file ({detail})")


class NpzFile:
    """An ``.npz`` archive read without trusting it (S3.11).

    Opening checks the zip directory against the file: every entry an ``.npy`` of a
    stored or deflate member, not encrypted, inside the file, a stored member's sizes
    equal, the members together no larger than the file (no overlapping members), and the
    deflated members' declared sizes within `inflate_limit`.
    `header` reads one entry's ``.npy`` header only (dtype, shape; no object, record or
    void dtypes); `read` checks that header against the entry's size before allocating,
    reads exactly that many bytes and checks the member's CRC-32.  Every failure is a
    ``ValueError`` naming the file.

    Parameters
    ----------
    path : str or PathLike
    what : str
        What the file should be, for messages (``"a spikenm packed container"``).
    label : str
        What an entry is called in messages (``"container field"``).
    """

    def __init__(self, path: str | os.PathLike[str], what: str, label: str) -> None:
        self.where = repr(os.fspath(path))
        self.label = label
        with open(path, "rb") as fh:
            magic = fh.read(4)
            size = os.fstat(fh.fileno()).st_size
        if magic != b"PK\x03\x04":
            raise ValueError(f"{self.where} is not {what}: expected an .npz (zip) file, found "
                             f"leading bytes {magic!r}")
        try:
            self.zip = zipfile.ZipFile(path)
        except Exception as exc:  # noqa: BLE001 - zipfile raises many types for bad bytes
            raise _corrupt(self.where, exc) from None
        try:
            self.members = self._members(self.zip.infolist(), size)
        except BaseException:
            self.zip.close()
            raise

    def _members(self, infos: list[zipfile.ZipInfo], size: int) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        compressed = decoded = 0
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{self.where} holds entry {name!r}; expected only .npy arrays")
            if name[:-4] in members:
                raise _corrupt(self.where, f"entry {name!r} appears twice")
            if info.flag_bits & 0x1:
                raise _corrupt(self.where, f"entry {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _corrupt(self.where, f"entry {name!r} uses compression method "
                                           f"{info.compress_type}; expected 0 (stored) or 8 "
                                           f"(deflate)")
            if info.header_offset + 30 + len(info.orig_filename) + info.compress_size > size:
                raise _corrupt(self.where, f"entry {name!r} ends beyond the end of the "
                                           f"{size}-byte file")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.compress_size != info.file_size:
                    raise _corrupt(self.where, f"stored entry {name!r} has sizes "
                                               f"{info.compress_size} and {info.file_size}")
            else:
                compressed += info.compress_size
                decoded += info.file_size
            members[name[:-4]] = info
        stored = sum(info.compress_size for info in infos)
        if stored > size:
            raise _corrupt(self.where, f"its entries hold {stored} bytes in a {size}-byte "
                                       f"file (overlapping entries)")
        if decoded > inflate_limit(compressed):
            raise ValueError(f"{self.where}: its deflated entries declare "
                             + inflate_advice(decoded, compressed))
        return members

    def __enter__(self) -> "NpzFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    @property
    def names(self) -> list[str]:
        """Entry names (without ``.npy``) in archive order."""
        return list(self.members)

    def _open_header(self, key: str) -> tuple[Any, np.dtype, tuple[int, ...], bool, int]:
        info = self.members[key]
        field = f"{self.where}: {self.label} {key!r}"
        try:
            fh = self.zip.open(info)
        except Exception as exc:  # noqa: BLE001
            raise _corrupt(self.where, exc) from None
        try:
            head = self._exact(fh, 10, key)
            if head[:6] != b"\x93NUMPY" or head[6] not in (1, 2):
                raise ValueError(f"{field} is not an .npy array (leading bytes {head[:8]!r})")
            if head[6] == 1:
                (length,), start = struct.unpack("<H", head[8:10]), 10
            else:
                head += self._exact(fh, 2, key)
                (length,), start = struct.unpack("<I", head[8:12]), 12
            if length > MAX_NPY_HEADER:
                raise ValueError(f"{field} has a {length}-byte .npy header; expected at most "
                                 f"{MAX_NPY_HEADER}")
            text = head + self._exact(fh, length, key)
            try:
                buffer = io.BytesIO(text)
                np.lib.format.read_magic(buffer)
                reader = (np.lib.format.read_array_header_1_0 if head[6] == 1
                          else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = reader(buffer, max_header_size=MAX_NPY_HEADER)
            except Exception as exc:  # noqa: BLE001 - literal_eval/tokenize raise many types
                raise ValueError(f"{field} has an unreadable .npy header "
                                 f"({type(exc).__name__}: {exc})") from None
            if dtype.hasobject:
                raise ValueError(f"{field} cannot be read with allow_pickle=False (dtype "
                                 f"{dtype} holds Python objects)")
            if dtype.kind not in NPY_KINDS or dtype.fields is not None or \
                    dtype.subdtype is not None:
                raise ValueError(f"{field} has dtype {dtype}; expected a plain numeric or "
                                 f"string dtype")
            if len(shape) > MAX_NDIM or any(s < 0 for s in shape):
                raise ValueError(f"{field} has shape {shape}; expected at most {MAX_NDIM} "
                                 f"non-negative lengths")
            nbytes = math.prod(shape) * dtype.itemsize
            data = info.file_size - start - length
            if nbytes != data:
                raise ValueError(f"{field}: its .npy header declares {dtype} {shape} "
                                 f"({nbytes} bytes) but the entry holds {data} data bytes")
            return fh, dtype, tuple(int(s) for s in shape), bool(fortran), nbytes
        except BaseException:
            fh.close()
            raise

    def _exact(self, fh: Any, count: int, key: str) -> bytes:
        try:
            data = fh.read(count)
        except Exception as exc:  # noqa: BLE001
            raise _corrupt(self.where, exc) from None
        if len(data) != count:
            raise _corrupt(self.where, f"entry {key!r} ends early")
        return data

    def header(self, key: str) -> tuple[np.dtype, tuple[int, ...]]:
        """``(dtype, shape)`` of entry ``key`` from its ``.npy`` header (no data read)."""
        fh, dtype, shape, _, _ = self._open_header(key)
        fh.close()
        return dtype, shape

    def read(self, key: str) -> np.ndarray:
        """The array of entry ``key``, in its stored dtype (byte order included)."""
        fh, dtype, shape, fortran, nbytes = self._open_header(key)
        with fh:
            buffer = bytearray(nbytes)
            view = memoryview(buffer)
            done = 0
            try:
                while done < nbytes:
                    chunk = fh.read(min(nbytes - done, 1 << 22))
                    if not chunk:
                        raise EOFError(f"entry {key!r} ends after {done} of {nbytes} bytes")
                    view[done:done + len(chunk)] = chunk
                    done += len(chunk)
                if fh.read(1):  # reaching the end checks the member's CRC-32
                    raise EOFError(f"entry {key!r} holds more than {nbytes} bytes")
            except Exception as exc:  # noqa: BLE001 - BadZipFile (CRC), zlib.error, EOFError
                raise _corrupt(self.where, exc) from None
        if nbytes == 0:
            return np.empty(shape, dtype)
        flat = np.frombuffer(buffer, dtype=dtype)
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _scalar(z: NpzFile, field: str, kind: str) -> Any:
    """A 0-d ``int`` (kind 'i') or ``str`` (kind 'U') field, checked before it is read."""
    dtype, shape = z.header(field)
    ok = shape == () and (dtype.kind in "iu" if kind == "i" else dtype.kind == "U")
    if not ok:
        expected = "a 0-d integer" if kind == "i" else "a 0-d string"
        raise ValueError(f"container field {field!r} is {dtype} {shape}; expected {expected}")
    a = z.read(field)
    return int(a) if kind == "i" else str(a)


def _open(path: str | os.PathLike[str]) -> NpzFile:
    """The container at ``path`` with exactly the `FIELDS`."""
    z = NpzFile(path, "a spikenm packed container", "container field")
    missing = [k for k in FIELDS if k not in z.members]
    extra = [k for k in z.members if k not in FIELDS]
    if missing or extra:
        z.zip.close()
        raise ValueError(
            f"{os.fspath(path)!r} is not a spikenm packed container: missing fields "
            f"{missing}, unexpected fields {extra}; expected exactly {list(FIELDS)}"
        )
    return z


def load_packed(path: str | os.PathLike[str]) -> Packed:
    """Read and validate a container written by `save_packed` (SPEC S3.5).

    Every field is checked: format and version, ``n:m``, shape and axis against the
    arrays, the values' storage dtype, indices in ``[0, m)`` and strictly increasing
    within each block, and the checksum.  Any failure raises ``ValueError`` naming the
    field; so do files that are not npz containers or are truncated.

    Returns
    -------
    Packed
        NumPy arrays; bfloat16 values as ``ml_dtypes.bfloat16``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from spikenm.api import pack
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_packed(path, pack(np.array([0, 3, 0, 0], dtype=np.int8), 1, 4))
    >>> p = load_packed(path)
    >>> p.values, p.indices, p.shape
    (array([3], dtype=int8), array([1], dtype=uint8), (4,))
    """
    where = repr(os.fspath(path))
    with loader_boundary(where, "spikenm packed container"):
        with _open(path) as z:
            return _load(z)


def _header_is(z: NpzFile, field: str, dtype: np.dtype, expected: tuple[int, ...],
               layout: str, dtype_name: str) -> None:
    """Entry ``field`` is declared ``dtype`` (either byte order) of shape ``expected``;
    checked before its data is read (S3.11)."""
    got, got_shape = z.header(field)
    if got.newbyteorder("<") != dtype:
        detail = f" for dtype {dtype_name!r}" if field == "values" else ""
        raise ValueError(f"container field {field!r} is stored as {got}; expected "
                         f"{dtype}{detail}")
    if got_shape != expected:
        raise ValueError(f"container: {field} have shape {got_shape}; expected {expected} "
                         f"for {layout}")


def _load(z: NpzFile) -> Packed:
    fmt = _scalar(z, "format", "U")
    if fmt != FORMAT:
        raise ValueError(f"container field 'format' is {fmt!r}; expected {FORMAT!r}")
    version = _scalar(z, "version", "i")
    if version != VERSION:
        raise ValueError(
            f"container field 'version' is {version}; this spikenm reads version {VERSION}"
        )
    n, m, axis = (_scalar(z, k, "i") for k in ("n", "m", "axis"))
    shape_dtype, shape_shape = z.header("shape")
    if len(shape_shape) != 1 or shape_dtype.kind not in "iu" or shape_shape[0] > MAX_NDIM:
        raise ValueError(
            f"container field 'shape' is {shape_dtype} {shape_shape}; expected a 1-D "
            f"integer array of at most {MAX_NDIM} lengths"
        )
    shape = tuple(int(s) for s in z.read("shape"))
    dtype = _scalar(z, "dtype", "U")
    if dtype not in STORAGE:
        raise ValueError(
            f"container field 'dtype' is {dtype!r}; expected one of {sorted(STORAGE)}"
        )
    check_pattern(shape, axis, n, m, "container")
    expected = _packed_shape(shape, axis, n, m)
    layout = f"dense shape {shape}, axis {axis} and {n}:{m}"
    _header_is(z, "values", STORAGE[dtype], expected, layout, dtype)
    _header_is(z, "indices", np.dtype(np.uint8), expected, layout, dtype)
    values, indices = z.read("values"), z.read("indices")
    check_layout(shape, axis, n, m, values, indices, "container")
    digest = _scalar(z, "sha256", "U")
    header = dict(format=fmt, version=version, n=n, m=m, shape=list(shape), axis=axis,
                  dtype=dtype)
    if digest != checksum(header, values, indices):
        raise ValueError(
            "container field 'sha256' does not match the header and arrays: the file was "
            "modified or corrupted"
        )
    values = values.astype(values.dtype.newbyteorder("="))
    if dtype == "bfloat16":
        values = values.view(numpy_bfloat16("loading bfloat16 values"))
    return Packed(values, np.ascontiguousarray(indices), n, m, shape, axis)
