"""Atomic ``.npz`` checkpoints without pickle (SPEC S5.12).

A checkpoint maps string keys to NumPy arrays plus one JSON metadata record (stored as a
0-d unicode array under ``__meta__``).  `save_checkpoint` writes a temporary file in the
target folder, flushes it to disk and renames it over the target, so a crash leaves either
the old or the new checkpoint, never a partial one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path

FORMAT = "spikenm.train.checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]
                    ) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray) or v.dtype == object]
    if bad:
        raise TypeError(f"checkpoint entries must be numeric NumPy arrays: {bad[:3]}")
    record = {"format": FORMAT, "version": VERSION, **meta}
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(record)), **arrays)


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a checkpoint written by `save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a spikenm checkpoint, wrong format/version, or an unreadable file.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(source)!r}")
    try:
        with np.load(source, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{source} is not a readable checkpoint: {exc}") from None
    if "__meta__" not in arrays:
        raise ValueError(f"{source} is not a spikenm checkpoint (no __meta__ entry)")
    meta = json.loads(str(arrays.pop("__meta__")))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{source}: format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"expected {FORMAT!r} version {VERSION}"
        )
    return arrays, meta
