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
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
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
    """Indices in ``[0, m)`` and strictly increasing within each block of ``n``."""
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


def _scalar(arrays: dict[str, np.ndarray], field: str, kind: str) -> Any:
    """A 0-d ``int`` (kind 'i') or ``str`` (kind 'U') field."""
    a = arrays[field]
    ok = a.shape == () and (a.dtype.kind in "iu" if kind == "i" else a.dtype.kind == "U")
    if not ok:
        expected = "a 0-d integer" if kind == "i" else "a 0-d string"
        raise ValueError(f"container field {field!r} is {a.dtype} {a.shape}; expected {expected}")
    return int(a) if kind == "i" else str(a)


def _read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every entry of the npz at ``path``; ``ValueError`` for anything that is not one."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(
            f"{os.fspath(path)!r} is not a spikenm packed container: expected an .npz (zip) "
            f"file, found leading bytes {magic!r}"
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            missing = [k for k in FIELDS if k not in names]
            extra = [k for k in names if k not in FIELDS]
            if missing or extra:
                raise ValueError(
                    f"{os.fspath(path)!r} is not a spikenm packed container: missing fields "
                    f"{missing}, unexpected fields {extra}; expected exactly {list(FIELDS)}"
                )
            for k in FIELDS:
                try:
                    arrays[k] = z[k]
                except ValueError as exc:
                    raise ValueError(
                        f"container field {k!r} cannot be read with allow_pickle=False ({exc})"
                    ) from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, KeyError) as exc:
        raise ValueError(
            f"{os.fspath(path)!r} is truncated or corrupt, not a readable .npz container "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return arrays


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
    arrays = _read(path)
    fmt = _scalar(arrays, "format", "U")
    if fmt != FORMAT:
        raise ValueError(f"container field 'format' is {fmt!r}; expected {FORMAT!r}")
    version = _scalar(arrays, "version", "i")
    if version != VERSION:
        raise ValueError(
            f"container field 'version' is {version}; this spikenm reads version {VERSION}"
        )
    n, m, axis = (_scalar(arrays, k, "i") for k in ("n", "m", "axis"))
    shape_a = arrays["shape"]
    if shape_a.ndim != 1 or shape_a.dtype.kind not in "iu":
        raise ValueError(
            f"container field 'shape' is {shape_a.dtype} {shape_a.shape}; expected a 1-D "
            f"integer array"
        )
    shape = tuple(int(s) for s in shape_a)
    dtype = _scalar(arrays, "dtype", "U")
    if dtype not in STORAGE:
        raise ValueError(
            f"container field 'dtype' is {dtype!r}; expected one of {sorted(STORAGE)}"
        )
    values, indices = arrays["values"], arrays["indices"]
    if values.dtype.newbyteorder("<") != STORAGE[dtype]:
        raise ValueError(
            f"container field 'values' is stored as {values.dtype}; expected "
            f"{STORAGE[dtype]} for dtype {dtype!r}"
        )
    check_layout(shape, axis, n, m, values, indices, "container")
    digest = _scalar(arrays, "sha256", "U")
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
