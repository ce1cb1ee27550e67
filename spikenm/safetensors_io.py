"""Packed N:M tensors in a ``.safetensors`` file (SPEC S3.1, the checks of S3.5).

Several `Packed` tensors go into one file written with ``safetensors.numpy``: tensor
``<name>.values`` (the values, in their own dtype; bfloat16 as the format's native
``BF16`` through ``ml_dtypes``) and ``<name>.indices`` (``uint8``) for every name, and
these entries of the file's text metadata:

=====================  ===============================================================
``spikenm.format``     ``"spikenm.packed.safetensors"``
``spikenm.version``    ``"3"``
``spikenm.tensors``    JSON object: name -> ``{"n", "m", "shape", "axis", "dtype",
                       "sha256"}`` (integers, a list of integers, strings)
``spikenm.dense``      JSON object: name -> ``{"shape", "dtype", "sha256"}`` of the dense
                       tensors stored under their own name (version 3)
``spikenm.sha256``     hex SHA-256 of the JSON object of every other metadata entry
                       (sorted keys, separators ``,`` and ``:``), the caller's included
=====================  ===============================================================

``sha256`` is `spikenm.container.checksum` of the header ``{axis, dtype, format, m, n,
shape, version}`` (``format = "spikenm.packed"``, ``version = 1``) and the little-endian
bytes of the values (bfloat16 as its ``uint16`` bits) and indices: the same digest as the
``.npz`` container (`spikenm.api.save_packed`) of the same tensor.  Other metadata
entries are the caller's (``str -> str``, keys not starting with ``spikenm.``).

Loading checks every field as `spikenm.api.load_packed` does -- the exact set of
tensors and metadata fields, their types, format and version, ``n:m``, axis and shape
against the arrays, the stored dtype, indices in ``[0, m)`` and strictly increasing per
block, the checksums -- and raises ``ValueError`` naming the file and the field.  A file
that is not safetensors, or a safetensors file without this metadata, is a ``ValueError``
too; so is any other failure inside the reader (S3.11).  Version 1 files (without
``spikenm.sha256``, so the caller's metadata is not covered) are still read.
Only NumPy is needed: PyTorch/JAX `Packed` tensors are copied to the host when saved.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from typing import Any

import numpy as np

from .container import FORMAT as CONTAINER_FORMAT
from .container import STORAGE, VERSION as CONTAINER_VERSION
from .container import check_layout, checksum, loader_boundary, numpy_bfloat16
from .atomic import atomic_path
from .dispatch import backend_for
from .packed import Packed

__all__ = ["save_packed_safetensors", "load_packed_safetensors", "load_safetensors_metadata",
           "FORMAT", "VERSION"]

FORMAT = "spikenm.packed.safetensors"
VERSION = 3
READS = ("1", "2", "3")
"""Versions `load_packed_safetensors` reads (1: no ``spikenm.sha256``)."""
FORMAT_KEY, VERSION_KEY, TENSORS_KEY = "spikenm.format", "spikenm.version", "spikenm.tensors"
DIGEST_KEY = "spikenm.sha256"
DENSE_KEY = "spikenm.dense"
"""Version 3: JSON object name -> ``{"shape", "dtype", "sha256"}`` of the dense tensors."""
DENSE_FIELDS = ("shape", "dtype", "sha256")
DENSE_FORMAT = "spikenm.dense"
RESERVED_PREFIX = "spikenm."
FIELDS = ("n", "m", "shape", "axis", "dtype", "sha256")
"""Fields of every tensor's entry in ``spikenm.tensors``."""
SUFFIXES = (".values", ".indices")


def _safetensors() -> Any:
    try:
        import safetensors.numpy as stn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading and writing .safetensors files needs the safetensors package: "
            "pip install 'spikenm[safetensors]'"
        ) from exc
    return stn


def _file_dtype(dtype: str) -> np.dtype:
    """NumPy dtype of the ``.values`` tensor of a ``dtype`` tensor, as safetensors gives it."""
    if dtype == "bfloat16":
        return np.dtype(numpy_bfloat16("bfloat16 values"))
    return STORAGE[dtype].newbyteorder("=")


def _header(n: int, m: int, shape: tuple[int, ...], axis: int, dtype: str) -> dict[str, Any]:
    return dict(format=CONTAINER_FORMAT, version=CONTAINER_VERSION, n=n, m=m,
                shape=list(shape), axis=axis, dtype=dtype)


def _digest(header: dict[str, Any], values: np.ndarray, indices: np.ndarray) -> str:
    """`checksum` over the stored bytes (bfloat16 as its uint16 bits, as the container)."""
    if header["dtype"] == "bfloat16":
        values = values.view(np.uint16)
    return checksum(header, values, indices)


def save_packed_safetensors(path: str | os.PathLike[str], packed_by_name: dict[str, Packed],
                            metadata: dict[str, str] | None = None, *,
                            dense: dict[str, Any] | None = None) -> None:
    """Write named `Packed` tensors, and optionally dense ones beside them (a whole
    model: the N:M layers packed, the dense layers, biases and batch-norm statistics as
    they are), to one ``.safetensors`` file.

    Every tensor is validated first (the checks of `load_packed_safetensors`), so only
    valid files are written; the file is written next to ``path`` and moved into place
    with ``os.replace``.

    Parameters
    ----------
    path : str or PathLike
    packed_by_name : dict str -> Packed
        Tensors of any backend (NumPy, PyTorch, JAX, array API); names are non-empty
        strings.
    metadata : dict str -> str, optional
        Extra text metadata; keys must not start with ``"spikenm."``.
    dense : dict str -> array, optional
        Dense tensors of any backend, stored under their own name with a checksum each
        (read back by `load_safetensors`); names must not clash with the packed ones or
        their ``.values``/``.indices`` tensors.

    Raises
    ------
    TypeError
        A value that is not a `Packed`, a dtype the container does not hold (bool,
        complex), non-string names or metadata.
    ValueError
        An invalid `Packed` (pattern, shape, axis, indices), an empty name, a reserved
        metadata key.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from spikenm.api import pack
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> w = np.array([[0.0, 5.0, 0.0, 7.0, 1.0, 0.0, 0.0, 2.0]], np.float32)
    >>> save_packed_safetensors(path, {"fc.weight": pack(w, 2, 4)}, {"run": "demo"})
    >>> loaded = load_packed_safetensors(path)
    >>> loaded["fc.weight"].values, loaded["fc.weight"].indices
    (array([[5., 7., 1., 2.]], dtype=float32), array([[1, 3, 0, 3]], dtype=uint8))
    >>> load_safetensors_metadata(path)
    {'run': 'demo'}
    """
    if not isinstance(packed_by_name, dict):
        raise TypeError(f"packed_by_name must be a dict str -> Packed, got "
                        f"{type(packed_by_name).__name__}")
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {value!r}")
        if key.startswith(RESERVED_PREFIX):
            raise ValueError(f"metadata key {key!r} is reserved (keys starting with "
                             f"{RESERVED_PREFIX!r} describe the tensors)")
    tensors: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, packed in packed_by_name.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(packed, Packed):
            raise TypeError(f"{name!r} is a {type(packed).__name__}; expected a spikenm Packed")
        be = backend_for(values=packed.values, indices=packed.indices)
        dtype = be.dtype_name(packed.values)
        if dtype not in STORAGE:
            raise TypeError(f"{name!r} has values of dtype {dtype}; the file stores "
                            f"{sorted(STORAGE)}")
        stored = be.to_numpy(packed.values).astype(STORAGE[dtype])
        indices = np.ascontiguousarray(be.to_numpy(packed.indices))
        n, m, axis = int(packed.n), int(packed.m), int(packed.axis)
        shape = tuple(int(s) for s in packed.shape)
        check_layout(shape, axis, n, m, stored, indices, f"packed tensor {name!r}")
        header = _header(n, m, shape, axis, dtype)
        entries[name] = dict(n=n, m=m, shape=list(shape), axis=axis, dtype=dtype,
                             sha256=checksum(header, stored, indices))
        values = stored.view(numpy_bfloat16("bfloat16 values")) if dtype == "bfloat16" else stored
        tensors[name + ".values"] = np.ascontiguousarray(values)
        tensors[name + ".indices"] = indices
    dense_entries = _dense_entries(dense, tensors, set(entries))
    extra.update({FORMAT_KEY: FORMAT, VERSION_KEY: str(VERSION),
                  TENSORS_KEY: json.dumps(entries, sort_keys=True, separators=(",", ":")),
                  DENSE_KEY: json.dumps(dense_entries, sort_keys=True, separators=(",", ":"))})
    extra[DIGEST_KEY] = metadata_digest(extra)
    with atomic_path(path) as tmp:
        _safetensors().save_file(tensors, tmp, metadata=extra)


def _dense_digest(shape: list[int], dtype: str, stored: np.ndarray) -> str:
    return checksum({"format": DENSE_FORMAT, "version": 1, "shape": shape, "dtype": dtype},
                    stored, np.empty(0, np.uint8))


def _dense_entries(dense: dict[str, Any] | None, tensors: dict[str, np.ndarray],
                   packed_names: set[str]) -> dict[str, dict[str, Any]]:
    """Add the dense tensors to ``tensors`` (which holds the packed ones); their metadata."""
    if dense is None:
        return {}
    if not isinstance(dense, dict):
        raise TypeError(f"dense must be a dict str -> array, got {type(dense).__name__}")
    entries: dict[str, dict[str, Any]] = {}
    for name, array in dense.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
        if name in tensors or name in packed_names:  # a packed name or one of its tensors
            raise ValueError(f"dense tensor name {name!r} clashes with a packed tensor")
        if array is None or not hasattr(array, "shape"):
            raise TypeError(f"dense tensor {name!r} is a {type(array).__name__}; expected "
                            f"an array")
        be = backend_for(**{"dense": array})
        dtype = be.dtype_name(array)
        if dtype not in STORAGE:
            raise TypeError(f"dense tensor {name!r} has dtype {dtype}; the file stores "
                            f"{sorted(STORAGE)}")
        stored = np.array(be.to_numpy(array), dtype=STORAGE[dtype], order="C")  # keeps 0-d
        shape = [int(x) for x in stored.shape]
        entries[name] = {"shape": shape, "dtype": dtype,
                         "sha256": _dense_digest(shape, dtype, stored)}
        tensors[name] = stored.view(numpy_bfloat16("bfloat16 values")) \
            if dtype == "bfloat16" else stored
    return entries


def _read(path: str | os.PathLike[str], *, arrays: bool = True
          ) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Metadata and (with ``arrays``) tensors of a safetensors file; ``ValueError`` for a
    file that is not one."""
    from safetensors import safe_open

    _safetensors()
    where = os.fspath(path)
    if os.path.isdir(where):
        raise IsADirectoryError(f"{where!r} is a directory; expected a .safetensors file")
    if not os.path.isfile(where):
        raise FileNotFoundError(f"no file at {where!r}")
    try:
        with safe_open(where, framework="np") as f:
            metadata = f.metadata()
            tensors = {key: f.get_tensor(key) for key in f.keys()} if arrays else {}
    except Exception as exc:  # safetensors raises SafetensorError (an Exception) and others
        raise ValueError(
            f"{where!r} is not a readable .safetensors file ({type(exc).__name__}: {exc})"
        ) from None
    return dict(metadata or {}), tensors


def metadata_digest(metadata: dict[str, str]) -> str:
    """Hex SHA-256 of the JSON object of ``metadata`` without ``spikenm.sha256`` (sorted
    keys, separators ``,`` and ``:``).

    Examples
    --------
    >>> len(metadata_digest({"spikenm.format": FORMAT}))
    64
    """
    rest = {k: v for k, v in metadata.items() if k != DIGEST_KEY}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{field} is {value!r}; expected an integer")
    return int(value)


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} is {value!r}; expected a string")
    return value


def _spikenm_metadata(metadata: dict[str, str], where: str) -> dict[str, Any]:
    """Format, version and the parsed ``spikenm.tensors`` object."""
    if FORMAT_KEY not in metadata:
        raise ValueError(
            f"{where!r} is a safetensors file without spikenm metadata (no "
            f"{FORMAT_KEY!r} entry; found {sorted(metadata)}); it was not written by "
            f"save_packed_safetensors"
        )
    if metadata[FORMAT_KEY] != FORMAT:
        raise ValueError(f"metadata field {FORMAT_KEY!r} is {metadata[FORMAT_KEY]!r}; "
                         f"expected {FORMAT!r}")
    version = metadata.get(VERSION_KEY)
    if version not in READS:
        raise ValueError(f"metadata field {VERSION_KEY!r} is {version!r}; this spikenm reads "
                         f"versions {', '.join(READS)}")
    if version == "1" and DIGEST_KEY in metadata:
        raise ValueError(f"metadata field {DIGEST_KEY!r} is not part of version 1")
    if TENSORS_KEY not in metadata:
        raise ValueError(f"metadata field {TENSORS_KEY!r} is missing")
    return _json_object(metadata, TENSORS_KEY)


def _check_digest(metadata: dict[str, str]) -> None:
    """``spikenm.sha256`` matches the other metadata (version 2 and later); checked after
    the fields, so a tampered field is named first."""
    if metadata.get(VERSION_KEY) != "1" and metadata.get(DIGEST_KEY) != metadata_digest(metadata):
        raise ValueError(f"metadata field {DIGEST_KEY!r} is missing or does not match the "
                         f"other metadata: the file was modified or corrupted")


def _shape_dtype(entry: dict[str, Any], field: str) -> tuple[tuple[int, ...], str]:
    """The ``shape`` (a list of integers) and ``dtype`` (a stored dtype) fields of a
    tensor's metadata, checked."""
    shape_list = entry["shape"]
    if not isinstance(shape_list, list):
        raise ValueError(f"{field}: field 'shape' is {shape_list!r}; expected a list of integers")
    shape = tuple(_int(v, f"{field}: field 'shape' entry") for v in shape_list)
    dtype = _str(entry["dtype"], f"{field}: field 'dtype'")
    if dtype not in STORAGE:
        raise ValueError(f"{field}: field 'dtype' is {dtype!r}; expected one of {sorted(STORAGE)}")
    return shape, dtype


def _tensor(name: str, entry: Any, tensors: dict[str, np.ndarray]) -> Packed:
    """Validate one described tensor (SPEC S3.5's checks) and build its `Packed`."""
    field = f"metadata of tensor {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{field} is {entry!r}; expected a JSON object with {list(FIELDS)}")
    missing = [k for k in FIELDS if k not in entry]
    extra = [k for k in entry if k not in FIELDS]
    if missing or extra:
        raise ValueError(f"{field} is missing fields {missing} and has unexpected fields "
                         f"{extra}; expected exactly {list(FIELDS)}")
    n, m, axis = (_int(entry[k], f"{field}: field {k!r}") for k in ("n", "m", "axis"))
    shape, dtype = _shape_dtype(entry, field)
    digest = _str(entry["sha256"], f"{field}: field 'sha256'")
    values, indices = tensors[name + ".values"], tensors[name + ".indices"]
    if values.dtype != _file_dtype(dtype):
        raise ValueError(f"tensor {name + '.values'!r} is stored as {values.dtype}; expected "
                         f"{_file_dtype(dtype)} for field 'dtype' {dtype!r}")
    check_layout(shape, axis, n, m, values, indices, f"tensor {name!r}")
    if digest != _digest(_header(n, m, shape, axis, dtype), values, indices):
        raise ValueError(
            f"{field}: field 'sha256' does not match the fields and arrays: the file was "
            f"modified or corrupted"
        )
    return Packed(np.array(values), np.array(indices), n, m, shape, axis)


def load_packed_safetensors(path: str | os.PathLike[str]) -> dict[str, Packed]:
    """Read and validate a file written by `save_packed_safetensors`: its packed tensors
    (dense tensors beside them are validated too; `load_safetensors` returns both).

    Returns
    -------
    dict str -> Packed
        NumPy arrays (bfloat16 as ``ml_dtypes.bfloat16``), sorted by name.

    Raises
    ------
    ValueError
        Not a safetensors file; no spikenm metadata; a missing, unexpected or invalid
        field or tensor (named); a checksum that does not match.
    FileNotFoundError
        No file at ``path``.
    """
    where = os.fspath(path)
    with loader_boundary(repr(where), "spikenm .safetensors file"):
        return _load(path, where)


def load_safetensors(path: str | os.PathLike[str]
                     ) -> tuple[dict[str, Packed], dict[str, np.ndarray]]:
    """``(packed, dense)``: every tensor of a file written by `save_packed_safetensors`,
    each validated and checked against its checksum (NumPy arrays, sorted by name).

    Raises
    ------
    ValueError, FileNotFoundError
        As `load_packed_safetensors`; also for a dense tensor whose field or checksum does
        not match (named).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from spikenm.api import pack
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> w = np.array([[0.0, 5.0, 0.0, 7.0]], np.float32)
    >>> save_packed_safetensors(path, {"fc.weight": pack(w, 2, 4)},
    ...                         dense={"fc.bias": np.array([0.5], np.float32)})
    >>> packed, dense = load_safetensors(path)
    >>> list(packed), dense["fc.bias"]
    (['fc.weight'], array([0.5], dtype=float32))
    """
    where = os.fspath(path)
    with loader_boundary(repr(where), "spikenm .safetensors file"):
        return _load_all(path, where)


def _dense_tensor(name: str, entry: Any, array: np.ndarray) -> np.ndarray:
    field = f"metadata of dense tensor {name!r}"
    if not isinstance(entry, dict) or sorted(entry) != sorted(DENSE_FIELDS):
        raise ValueError(f"{field} is {entry!r}; expected a JSON object with exactly "
                         f"{list(DENSE_FIELDS)}")
    shape_tuple, dtype = _shape_dtype(entry, field)
    shape = list(shape_tuple)
    if array.dtype != _file_dtype(dtype) or list(array.shape) != shape:
        raise ValueError(f"dense tensor {name!r} is stored as {array.dtype} {list(array.shape)}; "
                         f"its metadata says {dtype} {shape}")
    stored = array.view(STORAGE[dtype]) if dtype == "bfloat16" else array
    if _str(entry["sha256"], f"{field}: field 'sha256'") != _dense_digest(shape, dtype, stored):
        raise ValueError(f"{field}: field 'sha256' does not match the array: the file was "
                         f"modified or corrupted")
    return np.array(array)


def _load(path: str | os.PathLike[str], where: str) -> dict[str, Packed]:
    return _load_all(path, where)[0]


def _load_all(path: str | os.PathLike[str], where: str
              ) -> tuple[dict[str, Packed], dict[str, np.ndarray]]:
    metadata, tensors = _read(path)
    entries = _spikenm_metadata(metadata, where)
    dense_entries = _dense_metadata(metadata)
    expected = {name + suffix for name in entries for suffix in SUFFIXES} | set(dense_entries)
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{where!r}: tensors {missing} are described in {TENSORS_KEY!r} but missing, "
            f"tensors {unexpected} are not described; expected exactly '<name>.values' and "
            f"'<name>.indices' for every packed name and '<name>' for every dense one"
        )
    out = {name: _tensor(name, entry, tensors) for name, entry in sorted(entries.items())}
    dense = {name: _dense_tensor(name, entry, tensors[name])
             for name, entry in sorted(dense_entries.items())}
    _check_digest(metadata)
    return out, dense


def _dense_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """The parsed ``spikenm.dense`` object (version 3; ``{}`` before)."""
    if metadata.get(VERSION_KEY) in ("1", "2"):
        if DENSE_KEY in metadata:
            raise ValueError(f"metadata field {DENSE_KEY!r} is not part of version "
                             f"{metadata[VERSION_KEY]}")
        return {}
    if DENSE_KEY not in metadata:
        raise ValueError(f"metadata field {DENSE_KEY!r} is missing")
    return _json_object(metadata, DENSE_KEY)


def _json_object(metadata: dict[str, str], key: str) -> dict[str, Any]:
    """The JSON object of metadata field ``key`` (present), else a ``ValueError``."""
    try:
        entries = json.loads(metadata[key])
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"metadata field {key!r} is not valid JSON ({exc})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"metadata field {key!r} holds a {type(entries).__name__}; "
                         f"expected a JSON object name -> fields")
    return entries


def load_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The caller's metadata of a file written by `save_packed_safetensors` (the entries
    that do not start with ``"spikenm."``); ``ValueError`` as `load_packed_safetensors`
    for a file without spikenm metadata."""
    where = os.fspath(path)
    with loader_boundary(repr(where), "spikenm .safetensors file"):
        metadata, _ = _read(path, arrays=False)
        _spikenm_metadata(metadata, where)
        _check_digest(metadata)
        return {k: v for k, v in metadata.items() if not k.startswith(RESERVED_PREFIX)}
