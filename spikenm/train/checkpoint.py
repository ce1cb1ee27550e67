"""Atomic, checksummed ``.npz`` checkpoints and model files without pickle (SPEC S5.12).

A checkpoint maps string keys to NumPy arrays plus one JSON metadata record.  The file
(format version 2) is an uncompressed ``.npz`` of

============  ==============================================================
``__meta__``  0-d unicode: the JSON record ``{"format": "spikenm.train.checkpoint",
              "version": 2, "arrays": {key: [dtype, shape]}, ...the caller's meta}``
``__sha256__``  0-d unicode: hex SHA-256 of the UTF-8 ``__meta__`` text followed by the
              C-ordered little-endian bytes of every array, keys in sorted order
``<key>``     the arrays, little-endian
============  ==============================================================

`save_checkpoint` writes a temporary file in the target folder, flushes it to disk and
renames it over the target, so a crash leaves either the old or the new checkpoint, never a
partial one.  `load_checkpoint` trusts nothing in the file (S3.11): the zip directory, every
``.npy`` header against the manifest ``arrays`` and the entry sizes before anything is
allocated, then the checksum before anything is returned.  The final model of a run
(``model.npz``, ``meta["kind"] == "model"``) is the same format, read with `load_model`.
Version 1 (no checksum) is refused with an error naming the version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..container import NpzFile, loader_boundary

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "checkpoint_digest",
           "FORMAT", "VERSION"]

FORMAT = "spikenm.train.checkpoint"
VERSION = 2
META, DIGEST = "__meta__", "__sha256__"
RESERVED = ("format", "version", "arrays")
"""Keys of the record that `save_checkpoint` sets itself (not allowed in ``meta``)."""
KINDS = "biuf"
"""dtype kinds a checkpoint array may have."""


def checkpoint_digest(meta_text: str, arrays: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 of ``meta_text`` (UTF-8) and the little-endian C-ordered bytes of
    ``arrays`` in sorted key order (S5.12).

    Examples
    --------
    >>> len(checkpoint_digest("{}", {"a": np.zeros(2)}))
    64
    """
    digest = hashlib.sha256(meta_text.encode("utf-8"))
    for key in sorted(arrays):
        a = arrays[key]
        digest.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]
                    ) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically, with a checksum (S5.12).

    Raises
    ------
    TypeError
        An entry that is not a numeric (bool, integer, float) NumPy array; a key that is
        not a string.
    ValueError
        An empty key, a key starting with ``__``, or ``meta`` holding a reserved key
        (`RESERVED`; ``format`` and ``version`` are accepted when they are this format's,
        so that ``save_checkpoint(path, *load_checkpoint(path))`` writes the same file).
    """
    target = Path(path)
    bad = [k for k, v in arrays.items()
           if not isinstance(v, np.ndarray) or v.dtype.kind not in KINDS]
    if bad:
        raise TypeError(f"checkpoint entries must be numeric NumPy arrays: {bad[:3]}")
    keys = [k for k in arrays if not isinstance(k, str)]
    if keys:
        raise TypeError(f"checkpoint keys must be strings, got {keys[:3]}")
    bad = [k for k in arrays if not k or k.startswith("__")]
    if bad:
        raise ValueError(f"checkpoint keys must be non-empty and not start with '__': {bad[:3]}")
    current = {"format": FORMAT, "version": VERSION}
    clash = [k for k in RESERVED if k in meta and meta[k] != current.get(k, meta)]
    if clash:
        raise ValueError(f"checkpoint meta must not hold the reserved keys {clash} (other "
                         f"than format {FORMAT!r} and version {VERSION}, as loaded)")
    meta = {k: v for k, v in meta.items() if k not in RESERVED}
    stored = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
              for k, v in arrays.items()}
    manifest = {k: [stored[k].dtype.str, list(stored[k].shape)] for k in sorted(stored)}
    text = json.dumps({"format": FORMAT, "version": VERSION, **meta, "arrays": manifest})
    digest = checkpoint_digest(text, stored)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{META: np.array(text), DIGEST: np.array(digest)}, **stored)


def _record(z: NpzFile, where: str) -> tuple[str, dict[str, Any]]:
    """The ``__meta__`` text and its parsed record, format and version checked."""
    if META not in z.members:
        raise ValueError(f"{where} is not a spikenm checkpoint (no {META} entry)")
    dtype, shape = z.header(META)
    if dtype.kind != "U" or shape != ():
        raise ValueError(f"{where}: entry {META!r} is {dtype} {shape}; expected a 0-d string")
    text = str(z.read(META))
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: entry {META!r} is not valid JSON "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: entry {META!r} holds a {type(record).__name__}; "
                         f"expected a JSON object")
    fmt, version = record.get("format"), record.get("version")
    if fmt != FORMAT or version != VERSION:
        old = (" (version 1 checkpoints carry no checksum and are not read; train again or "
               "resume with the spikenm that wrote it)" if fmt == FORMAT and version == 1
               else "")
        raise ValueError(f"{where}: format {fmt!r} version {version!r}; expected {FORMAT!r} "
                         f"version {VERSION}{old}")
    return text, record


def _manifest(record: dict[str, Any], where: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    manifest = record.get("arrays")
    if not isinstance(manifest, dict):
        raise ValueError(f"{where}: metadata 'arrays' is {manifest!r}; expected an object "
                         f"key -> [dtype, shape]")
    out = {}
    for key, entry in manifest.items():
        ok = (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
              and isinstance(entry[1], list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                      for s in entry[1]))
        try:
            dtype = np.dtype(entry[0]) if ok else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in KINDS or dtype.fields is not None:
            raise ValueError(f"{where}: metadata 'arrays' entry {key!r} is {entry!r}; "
                             f"expected [numeric dtype, shape]")
        out[key] = (dtype, tuple(entry[1]))
    return out


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    where = repr(str(path))
    with NpzFile(path, "a readable checkpoint", "checkpoint entry") as z:
        text, record = _record(z, where)
        manifest = _manifest(record, where)
        present = set(z.members) - {META, DIGEST}
        missing, extra = sorted(set(manifest) - present), sorted(present - set(manifest))
        if missing or extra or DIGEST not in z.members:
            raise ValueError(f"{where}: entries {missing} of its manifest are missing, "
                             f"entries {extra} are not in it"
                             + ("" if DIGEST in z.members else f", no {DIGEST!r} entry"))
        for key, (dtype, shape) in manifest.items():
            got = z.header(key)
            if got != (dtype, shape):
                raise ValueError(f"{where}: entry {key!r} is {got[0]} {got[1]}; its manifest "
                                 f"says {dtype} {shape}")
        dtype, shape = z.header(DIGEST)
        if dtype.kind != "U" or shape != ():
            raise ValueError(f"{where}: entry {DIGEST!r} is {dtype} {shape}; expected a 0-d "
                             f"string")
        digest = str(z.read(DIGEST))
        arrays = {key: z.read(key) for key in sorted(manifest)}
    if digest != checkpoint_digest(text, arrays):
        raise ValueError(f"{where}: the checksum {DIGEST!r} does not match the metadata and "
                         f"arrays: the file was modified or corrupted")
    del record["arrays"]
    return {k: a.astype(a.dtype.newbyteorder("="), copy=False) for k, a in arrays.items()}, \
        record


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a file written by `save_checkpoint` (S5.12, S3.11).

    ``meta`` is the caller's record plus ``format`` and ``version``.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        From the operating system.
    ValueError
        Anything else, naming the file: not a spikenm checkpoint, another format or
        version, a corrupt or truncated archive, an entry whose header disagrees with the
        manifest or its size, a checksum that does not match.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"no checkpoint at {str(source)!r}")
    with loader_boundary(repr(str(source)), "spikenm checkpoint"):
        return _load(source)


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a run's final model (``model.npz``: ``layer{k}.weight``/
    ``.bias``, batch-norm buffers, ``layer{k}.mask``; ``meta`` with ``kind == "model"``,
    ``config`` and ``graph``), checked as `load_checkpoint` does.

    Raises
    ------
    ValueError
        As `load_checkpoint`, and for a checkpoint that is not a model file.
    """
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != "model":
        raise ValueError(f"{str(path)!r} is a spikenm checkpoint of kind "
                         f"{meta.get('kind')!r}; expected a model file (kind 'model')")
    return arrays, meta
