"""Array plumbing of the reference backend (NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def dtype_name(x: np.ndarray) -> str:
    """Canonical dtype name (``'float32'``, ``'bfloat16'`` for ml_dtypes, ...)."""
    return np.dtype(x.dtype).name


def moveaxis(x: np.ndarray, source: int, destination: int) -> np.ndarray:
    return np.moveaxis(x, source, destination)


def all_finite(x: np.ndarray) -> bool:
    if not np.issubdtype(x.dtype, np.inexact):
        return True
    return bool(np.isfinite(x).all())


def to_numpy(x: np.ndarray) -> np.ndarray:
    """A copy of ``x``; an ml_dtypes bfloat16 array comes back as its uint16 bits."""
    if np.dtype(x.dtype).name == "bfloat16":
        return np.array(x).view(np.uint16)
    return np.array(x)


def from_numpy(a: np.ndarray, like: Any = None) -> np.ndarray:
    return np.asarray(a)
